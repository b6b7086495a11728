// node-postgres: text results, parameterised and named prepared queries, types, errors.
const { test } = require('node:test');
const assert = require('node:assert');
const { Client } = require('pg');

const port = Number(process.env.HW_PORT);
if (!port) throw new Error('HW_PORT is not set: run the client tests through scripts/clients.sh');
const connect = async () => {
  const c = new Client({ host: '127.0.0.1', port, database: 'headwater', user: 'node' });
  await c.connect();
  return c;
};

test('every type, plain query', async () => {
  const c = await connect();
  try {
    const { rows, fields } = await c.query('SELECT * FROM items ORDER BY id');
    assert.deepStrictEqual(rows.map((r) => r.id), ['1', '2', '3']); // int8 arrives as a string
    const [pen, book, odd] = rows;
    assert.strictEqual(pen.name, 'pen');
    assert.strictEqual(pen.price, '1.20');
    assert.strictEqual(pen.qty, 10);
    assert.strictEqual(pen.small, 1);
    assert.strictEqual(pen.weight, 0.5);
    assert.strictEqual(pen.active, true);
    assert.strictEqual(pen.at_time, '12:34:56');
    assert.strictEqual(pen.updated.toISOString(), '2024-01-02T03:04:05.000Z');
    assert.deepStrictEqual(pen.payload, Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    assert.ok(Number.isNaN(book.weight));
    assert.strictEqual(book.ratio, Infinity);
    assert.strictEqual(book.qty, null);
    assert.strictEqual(odd.weight, -Infinity);
    assert.strictEqual(odd.name, 'ünïcödé ✓');
    assert.strictEqual(fields.find((f) => f.name === 'updated').dataTypeID, 1184);
  } finally {
    await c.end();
  }
});

test('parameters, named prepared statements, arrays and intervals', async () => {
  const c = await connect();
  try {
    const byId = { name: 'item-by-id', text: 'SELECT name FROM items WHERE id = $1', values: [2] };
    assert.strictEqual((await c.query(byId)).rows[0].name, 'book');
    assert.strictEqual((await c.query({ ...byId, values: [1] })).rows[0].name, 'pen');
    const r = await c.query("SELECT ARRAY[1, 2, 3] AS ints, ARRAY['a', 'b'] AS texts, interval '1 day 2 hours' AS iv, $1::text AS echo", ['hé']);
    assert.deepStrictEqual(r.rows[0].texts, ['a', 'b']);
    // ARRAY[1, 2, 3] is integer[] (as in Postgres): node-postgres gives numbers.
    assert.deepStrictEqual(r.rows[0].ints, [1, 2, 3]);
    assert.strictEqual(r.rows[0].iv.days, 1);
    assert.strictEqual(r.rows[0].iv.hours, 2);
    assert.strictEqual(r.rows[0].echo, 'hé');
    const totals = await c.query('SELECT active, n FROM totals ORDER BY active');
    assert.deepStrictEqual(totals.rows.map((t) => [t.active, t.n]), [[false, '1'], [true, '2']]);
  } finally {
    await c.end();
  }
});

test('errors carry SQLSTATE', async () => {
  const c = await connect();
  try {
    await assert.rejects(c.query('SELECT * FROM missing_table'), (e) => e.code === '42P01');
    await assert.rejects(c.query('SELEC 1'), (e) => e.code === '42601');
    // `1` is an integer (int4), which node-postgres gives as a number (int8 as a string).
    assert.strictEqual((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  } finally {
    await c.end();
  }
});

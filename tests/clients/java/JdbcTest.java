// pgjdbc (Debian's libpostgresql-jdbc-java): prepared statements (binary after the prepare
// threshold), every type, fetchSize with a named portal, metadata (tables, columns, primary
// keys), SQLSTATEs. Run by scripts/clients.sh; exits non-zero on the first failed check.
import java.math.BigDecimal;
import java.sql.*;
import java.time.*;
import java.util.*;

public class JdbcTest {
    static int checks = 0;

    static void check(boolean ok, String what) {
        checks++;
        if (!ok) throw new AssertionError("FAILED: " + what);
    }

    static void eq(Object expected, Object actual, String what) {
        check(Objects.equals(expected, actual), what + ": expected " + expected + ", got " + actual);
    }

    public static void main(String[] args) throws Exception {
        String port = System.getenv("HW_PORT");
        if (port == null) throw new IllegalStateException("HW_PORT is not set: run through scripts/clients.sh");
        String url = "jdbc:postgresql://127.0.0.1:" + port + "/headwater?user=jdbc&prepareThreshold=1";
        try (Connection c = DriverManager.getConnection(url)) {
            types(c);
            prepared(c);
            fetchSize(c);
            metadata(c);
            errors(c);
        }
        System.out.println("jdbc: " + checks + " checks passed");
    }

    static void types(Connection c) throws SQLException {
        // Twice: the first run is text, the second binary (prepareThreshold=1 switches).
        for (int run = 0; run < 2; run++) {
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM items ORDER BY id");
                 ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "row 1");
                eq(1L, rs.getLong("id"), "id");
                eq("pen", rs.getString("name"), "name");
                eq(new BigDecimal("1.20"), rs.getBigDecimal("price"), "numeric");
                eq(10, rs.getInt("qty"), "int4");
                eq((short) 1, rs.getShort("small"), "int2");
                eq(0.5, rs.getDouble("weight"), "float8");
                eq(0.25f, rs.getFloat("ratio"), "float4");
                eq(true, rs.getBoolean("active"), "bool");
                eq(LocalDate.of(2024, 2, 29), rs.getObject("born", LocalDate.class), "date");
                eq(LocalTime.of(12, 34, 56), rs.getObject("at_time", LocalTime.class), "time");
                eq(LocalDateTime.of(2024, 1, 2, 3, 4, 5, 123456000), rs.getObject("created", LocalDateTime.class), "timestamp");
                eq(OffsetDateTime.of(2024, 1, 2, 3, 4, 5, 0, ZoneOffset.UTC).toInstant(),
                   rs.getObject("updated", OffsetDateTime.class).toInstant(), "timestamptz");
                check(Arrays.equals(new byte[] {(byte) 0xde, (byte) 0xad, (byte) 0xbe, (byte) 0xef}, rs.getBytes("payload")), "bytea");
                check(rs.next(), "row 2");
                check(Double.isNaN(rs.getDouble("weight")), "NaN");
                eq(Float.POSITIVE_INFINITY, rs.getFloat("ratio"), "Infinity");
                rs.getInt("qty");
                check(rs.wasNull(), "NULL int");
                check(rs.next(), "row 3");
                eq("ünïcödé ✓", rs.getString("name"), "unicode");
                eq(Double.NEGATIVE_INFINITY, rs.getDouble("weight"), "-Infinity");
                check(!rs.next(), "three rows");
            }
        }
        try (Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT ARRAY[1, 2, 3] AS ints, ARRAY['a', 'b'] AS texts, interval '1 day 2 hours' AS iv")) {
            check(rs.next(), "array row");
            eq(List.of(1, 2, 3), Arrays.asList((Object[]) rs.getArray("ints").getArray()), "int4[]");
            eq(List.of("a", "b"), Arrays.asList((Object[]) rs.getArray("texts").getArray()), "text[]");
            eq("1 day 02:00:00", rs.getString("iv"), "interval");
        }
    }

    static void prepared(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT name, price FROM items WHERE id = ? AND price > ?")) {
            for (int i = 0; i < 3; i++) {
                ps.setLong(1, 2);
                ps.setBigDecimal(2, new BigDecimal("5"));
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "prepared row");
                    eq("book", rs.getString(1), "prepared name");
                }
            }
        }
        try (Statement st = c.createStatement()) {
            st.execute("CREATE TABLE IF NOT EXISTS jdbc_scratch (id INT PRIMARY KEY, name TEXT, at TIMESTAMPTZ, data BYTEA)");
            st.execute("DELETE FROM jdbc_scratch");
        }
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO jdbc_scratch VALUES (?, ?, ?, ?)")) {
            for (int i = 1; i <= 3; i++) {
                ins.setInt(1, i);
                ins.setString(2, "n" + i);
                ins.setObject(3, OffsetDateTime.of(2020, 1, 1, 0, 0, i, 0, ZoneOffset.ofHours(2)));
                ins.setBytes(4, new byte[] {(byte) i});
                ins.addBatch();
            }
            int[] counts = ins.executeBatch();
            eq(3, counts.length, "batch size");
        }
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*), max(at) FROM jdbc_scratch")) {
            check(rs.next(), "count row");
            eq(3L, rs.getLong(1), "batched inserts");
            eq(Instant.parse("2019-12-31T22:00:03Z"), rs.getObject(2, OffsetDateTime.class).toInstant(), "timestamptz param");
            st.execute("DROP TABLE jdbc_scratch");
        }
    }

    static void fetchSize(Connection c) throws SQLException {
        // fetchSize needs a transaction: pgjdbc then uses a named portal and Execute with a row
        // limit, reading PortalSuspended between batches.
        c.setAutoCommit(false);
        try (Statement st = c.createStatement()) {
            st.setFetchSize(2);
            try (ResultSet rs = st.executeQuery("SELECT x FROM generate_series(1, 25) AS t(x) ORDER BY x")) {
                long sum = 0;
                int n = 0;
                while (rs.next()) {
                    sum += rs.getLong(1);
                    n++;
                }
                eq(25, n, "rows through a suspended portal");
                eq(325L, sum, "sum of the rows");
            }
        }
        c.commit();
        c.setAutoCommit(true);
    }

    static void metadata(Connection c) throws SQLException {
        DatabaseMetaData md = c.getMetaData();
        check(md.getDatabaseProductVersion().startsWith("16"), "server version " + md.getDatabaseProductVersion());
        Set<String> tables = new TreeSet<>();
        try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"})) {
            while (rs.next()) tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
        }
        check(tables.contains("items:TABLE"), "getTables lists items: " + tables);
        check(tables.contains("cheap:VIEW"), "getTables lists the view: " + tables);
        check(tables.contains("totals:MATERIALIZED VIEW"), "getTables lists the materialized view: " + tables);
        List<String> columns = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, "public", "items", "%")) {
            while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
        }
        eq("id:int8", columns.get(0), "first column");
        check(columns.contains("price:numeric"), "numeric column: " + columns);
        List<String> keys = new ArrayList<>();
        try (ResultSet rs = md.getPrimaryKeys(null, "public", "items")) {
            while (rs.next()) keys.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("PK_NAME"));
        }
        eq(List.of("id:items_pkey"), keys, "primary key");
    }

    static void errors(Connection c) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.executeQuery("SELECT * FROM nowhere");
            check(false, "missing table raises");
        } catch (SQLException e) {
            eq("42P01", e.getSQLState(), "SQLSTATE");
        }
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
            check(rs.next(), "connection usable after an error");
        }
    }
}

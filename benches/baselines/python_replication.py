"""Baseline for the binlog catch-up benchmark (benches/mysql_source.rs): python-mysql-replication
(`pip install mysql-replication`) reading and decoding the same binlog range.

Usage: python_replication.py PORT FILE POS ROWS — prints "<row events> <seconds>".
"""
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main():
    port, log_file, log_pos, rows = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    stream = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": port, "user": "root", "passwd": ""},
        server_id=4343,
        log_file=log_file,
        log_pos=log_pos,
        resume_stream=True,
        blocking=False,
        is_mariadb=True,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        enable_logging=False,
    )
    seen = 0
    start = time.perf_counter()
    for event in stream:
        for row in event.rows:  # decodes every value of the row image
            seen += 1
        if seen >= rows:
            break
    elapsed = time.perf_counter() - start
    stream.close()
    if seen < rows:
        sys.exit(f"python-mysql-replication saw only {seen} of {rows} row events")
    print(seen, elapsed)


if __name__ == "__main__":
    main()

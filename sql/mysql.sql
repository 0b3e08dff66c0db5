-- api-monitor schema for MySQL 8 / MariaDB 10.11 (`mysql://USER:PASS@HOST:PORT/DB`), version 3.
--
-- `state` records every transition of a monitored target as seen from one region: one row when
-- the target settles Up or Down. `id`, `timestamp` and `healthy` keep the original tool's
-- meaning, so `select * from state;` still answers the old question; `target`, `region` and
-- `reason` were added for several targets, regions and the email's "why".
--
-- Plain SQL: the MySQL docker image runs this file from /docker-entrypoint-initdb.d, and
-- api-monitor applies it at every connect by splitting it on `;`. So: every statement is
-- idempotent, comments sit on their own lines, and no `;` appears inside a statement.
-- Same logical schema as sql/sqlite.sql; keep the two in step.
--
-- A database of version 1 (no `schema_version` table) is upgraded by api-monitor itself before
-- this file runs (src/store/mysql.rs: MySQL 8 has no ADD COLUMN IF NOT EXISTS, so it checks
-- information_schema and adds what is missing). The columns version 2 added come last in each
-- table, so a new database and an upgraded one look the same.
--
-- target and region compare as binary (utf8mb4_bin), as in SQLite: URLs are case-sensitive.
-- Indexes sit inside CREATE TABLE because MySQL 8 has no CREATE INDEX IF NOT EXISTS. The
-- target index uses a 255-character prefix: a full VARCHAR(2048) in utf8mb4 (8 KiB) exceeds
-- InnoDB's 3072-byte key limit. Rows of targets sharing that prefix are told apart by the
-- row lookup, so the index only has to narrow the search.
--
-- maintenance, held (version 3): the maintenance a transition happened in (NULL outside one),
-- and whether its notification is held back with the summary not yet written (see
-- sql/sqlite.sql).
--
-- row_key (version 2): 32 hex digits made before the first attempt to write the row, under a
-- unique index, so a write retried after a lost reply finds the row and writes nothing
-- (INSERT ... ON DUPLICATE KEY UPDATE row_key = row_key). NULL in rows written by version 1:
-- a unique index allows any number of NULLs. ASCII and binary: a key is hex, compared exactly.

CREATE TABLE IF NOT EXISTS state (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    `timestamp` DATETIME(3) NOT NULL,
    healthy     BOOLEAN NOT NULL,
    target      VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT 'direct',
    reason      VARCHAR(1024) NULL,
    row_key     CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    maintenance VARCHAR(255) NULL,
    held        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (id),
    KEY state_target_region_time (target(255), region, `timestamp`, id),
    UNIQUE KEY state_row_key (row_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- `notification` is the outbox: every email is written here, in the same transaction as the
-- transition it announces, before it is sent. `state_id` is that transition (NULL for
-- reminders and blind-region emails); `recipients` is comma-separated.
-- Delivery status: sent when `sent_at` is set (the SMTP server accepted it), dead when
-- `dead_at` is set (refused for good: kept for `api-monitor outbox`, retried only when
-- re-queued), pending when both are NULL. `refused` names the recipients the server refused
-- while it accepted the others, with its answers. `subject` is TEXT: it holds a 2048-character
-- URL and more (version 1's VARCHAR(1024) failed such an insert with error 1406).
-- `last_error` and `refused` are clipped by api-monitor to their lengths.

CREATE TABLE IF NOT EXISTS notification (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    state_id    BIGINT NULL,
    target      VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT 'direct',
    recipients  VARCHAR(2048) NOT NULL,
    subject     TEXT NOT NULL,
    `text`      MEDIUMTEXT NOT NULL,
    html        MEDIUMTEXT NOT NULL,
    created_at  DATETIME(3) NOT NULL,
    attempts    INT NOT NULL DEFAULT 0,
    last_error  VARCHAR(1024) NULL,
    sent_at     DATETIME(3) NULL,
    row_key     CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    dead_at     DATETIME(3) NULL,
    refused     VARCHAR(2048) NULL,
    PRIMARY KEY (id),
    KEY notification_unsent (sent_at, id),
    UNIQUE KEY notification_row_key (row_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Version 2: one instance per database. The row named 'api-monitor' is the lock: free when
-- holder_id is NULL, otherwise held by that instance, which refreshes heartbeat_at every few
-- seconds. A claim reads it with SELECT ... FOR UPDATE in a transaction. Times are written and
-- compared by the database's clock (UTC_TIMESTAMP(6)), never a host's, so two hosts with
-- skewed clocks agree on a heartbeat's age.

CREATE TABLE IF NOT EXISTS holder (
    name         VARCHAR(32) NOT NULL,
    holder_id    CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    host         VARCHAR(255) NULL,
    pid          INT UNSIGNED NULL,
    started_at   DATETIME(6) NULL,
    heartbeat_at DATETIME(6) NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Cluster mode (issue 12; MySQL only: SQLite is refused in cluster mode). New tables only, no
-- change to the tables above, so the schema version stays 2: an older binary opening this
-- database sees two extra empty tables and never reads them. Every time is the database's clock
-- (NOW(6), the session zone being +00:00): ages are TIMESTAMPDIFF(MICROSECOND, heartbeat_at,
-- NOW(6)), so hosts' clocks never meet.
--
-- `cluster_member`: one row per running instance of a cluster, upserted at every heartbeat
-- (started_at kept from the first insert). A member whose heartbeat is older than the lease is
-- gone. A member that stops cleanly deletes its row; one that dies is only old.

CREATE TABLE IF NOT EXISTS cluster_member (
    cluster      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    instance_id  VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    site         VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    version      VARCHAR(64) NOT NULL,
    started_at   DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    PRIMARY KEY (cluster, instance_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- `cluster_leader`: the leader lease, one row per cluster, only ever changed by conditional
-- statements. The first leader inserts it with term 1 (a duplicate key means another won); a
-- takeover adds 1 to the term it read, only while the lease is expired; a renewal only matches
-- its own holder and term. Leader-only writes lock this row (SELECT ... FOR UPDATE on holder
-- and term) in their transaction, so a deposed leader writes nothing.

CREATE TABLE IF NOT EXISTS cluster_leader (
    cluster      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    holder       VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    term         BIGINT UNSIGNED NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    PRIMARY KEY (cluster)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The schema version (see SCHEMA_VERSION in src/store/mod.rs): one row, id 1. A database whose
-- version is newer than the binary's is refused at open.

CREATE TABLE IF NOT EXISTS schema_version (
    id      TINYINT NOT NULL,
    version INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;

-- Version 3: silences set at run time by `api-monitor silence` (see sql/sqlite.sql).
CREATE TABLE IF NOT EXISTS silence (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    target     VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    starts_at  DATETIME(3) NOT NULL,
    ends_at    DATETIME(3) NOT NULL,
    reason     VARCHAR(255) NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at DATETIME(3) NOT NULL,
    PRIMARY KEY (id),
    KEY silence_ends (ends_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- `latency`: probe latency per target × region as histograms (see sql/sqlite.sql). No unique
-- key (a 255-character prefix could not tell long URLs apart): a row is replaced by deleting
-- the old one and inserting the new one in one transaction.
CREATE TABLE IF NOT EXISTS latency (
    target  VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region  VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    span    INT NOT NULL,
    start   DATETIME(3) NOT NULL,
    probes  BIGINT NOT NULL,
    buckets TEXT NOT NULL,
    KEY latency_target_region_span_start (target(255), region, span, start),
    KEY latency_span_start (span, start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO schema_version (id, version) VALUES (1, 3) ON DUPLICATE KEY UPDATE id = id;
UPDATE schema_version SET version = 3 WHERE id = 1 AND version < 3;

-- api-monitor schema for MySQL 8 / MariaDB 10.11 (`mysql://USER:PASS@HOST:PORT/DB`).
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
-- target and region compare as binary (utf8mb4_bin), as in SQLite: URLs are case-sensitive.
-- The index sits inside CREATE TABLE because MySQL 8 has no CREATE INDEX IF NOT EXISTS. It
-- uses a 255-character prefix of target: a full VARCHAR(2048) in utf8mb4 (8 KiB) exceeds
-- InnoDB's 3072-byte key limit. Rows of targets sharing that prefix are told apart by the
-- row lookup, so the index only has to narrow the search.

CREATE TABLE IF NOT EXISTS state (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    `timestamp` DATETIME(3) NOT NULL,
    healthy     BOOLEAN NOT NULL,
    target      VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT 'direct',
    reason      VARCHAR(1024) NULL,
    PRIMARY KEY (id),
    KEY state_target_region_time (target(255), region, `timestamp`, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- `notification` is the outbox: every email is written here before it is sent and marked
-- sent only after the SMTP server accepted it, so a crash or a mail-server outage never loses
-- one and a restart never sends one twice. `state_id` is the transition it announces;
-- `recipients` is comma-separated; `sent_at` stays NULL until the SMTP server accepted it.

CREATE TABLE IF NOT EXISTS notification (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    state_id    BIGINT NULL,
    target      VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT 'direct',
    recipients  VARCHAR(2048) NOT NULL,
    subject     VARCHAR(1024) NOT NULL,
    `text`      MEDIUMTEXT NOT NULL,
    html        MEDIUMTEXT NOT NULL,
    created_at  DATETIME(3) NOT NULL,
    attempts    INT NOT NULL DEFAULT 0,
    last_error  VARCHAR(1024) NULL,
    sent_at     DATETIME(3) NULL,
    PRIMARY KEY (id),
    KEY notification_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

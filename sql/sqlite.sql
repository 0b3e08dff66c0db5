-- api-monitor schema for the embedded SQLite store (the default, `sqlite://PATH`).
--
-- `state` records every transition of a monitored target as seen from one region: one row when
-- the target settles Up or Down. `id`, `timestamp` and `healthy` keep the original tool's
-- meaning, so `select * from state;` still answers the old question; `target`, `region` and
-- `reason` were added for several targets, regions and the email's "why".
--
-- Applied at every open, so every statement must be idempotent (IF NOT EXISTS).
-- Same logical schema as sql/mysql.sql; keep the two in step.

CREATE TABLE IF NOT EXISTS state (
    -- AUTOINCREMENT: ids are never reused, even after rows are deleted.
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UTC with milliseconds, always `YYYY-MM-DD HH:MM:SS.fff` (fixed width, so text order is
    -- time order): when the new state began, i.e. the first probe of the streak that settled it.
    timestamp TEXT NOT NULL,
    healthy   INTEGER NOT NULL CHECK (healthy IN (0, 1)),
    target    VARCHAR(2048) NOT NULL,
    region    VARCHAR(64) NOT NULL DEFAULT 'direct',
    -- First failure reason of an outage (at most 1024 characters); NULL for an Up row.
    reason    VARCHAR(1024) NULL
);

-- Serves "the last row of a target/region" and the (timestamp, id)-ordered range scans.
CREATE INDEX IF NOT EXISTS state_target_region_time ON state (target, region, timestamp, id);

-- `notification` is the outbox: every email is written here before it is sent and marked
-- sent only after the SMTP server accepted it, so a crash or a mail-server outage never loses
-- one and a restart never sends one twice. `state_id` is the transition it announces.
CREATE TABLE IF NOT EXISTS notification (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    state_id   INTEGER NULL REFERENCES state (id),
    target     VARCHAR(2048) NOT NULL,
    region     VARCHAR(64) NOT NULL DEFAULT 'direct',
    -- Comma-separated addresses, as sent.
    recipients VARCHAR(2048) NOT NULL,
    subject    VARCHAR(1024) NOT NULL,
    text       TEXT NOT NULL,
    html       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR(1024) NULL,
    -- NULL until the SMTP server accepted the message.
    sent_at    TEXT NULL
);

-- Serves "the unsent notifications, oldest first".
CREATE INDEX IF NOT EXISTS notification_unsent ON notification (sent_at, id);

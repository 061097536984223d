-- Initial schema (SQLite). Same tables and columns as the MySQL schema.
--
-- Times are TEXT 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (fixed width, so they
-- sort as they compare); the columns are declared DATETIME so the driver
-- hands them back as time values. JSON columns are TEXT; NULL means "none".
-- Text compares with the default BINARY collation, like utf8mb4_bin.

-- +goose Up
CREATE TABLE rms (
    id            INTEGER PRIMARY KEY,
    username      TEXT     NOT NULL,
    name          TEXT     NOT NULL DEFAULT '',
    phone         TEXT     NOT NULL DEFAULT '',
    role          TEXT     NOT NULL,
    password_hash TEXT     NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL
);
CREATE UNIQUE INDEX rms_username ON rms (username);

CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY,
    phone       TEXT     NOT NULL,
    name        TEXT     NOT NULL DEFAULT '',
    owner_rm_id INTEGER  NULL,
    created_at  DATETIME NOT NULL
);
CREATE UNIQUE INDEX contacts_phone ON contacts (phone);
CREATE INDEX contacts_owner ON contacts (owner_rm_id);

CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    channel         TEXT     NOT NULL,
    business_number TEXT     NOT NULL,
    contact_id      INTEGER  NOT NULL REFERENCES contacts (id),
    assigned_rm_id  INTEGER  NULL,
    last_seq        INTEGER  NOT NULL DEFAULT 0,
    last_message_at DATETIME NULL,
    last_inbound_at DATETIME NULL,
    created_at      DATETIME NOT NULL
);
CREATE UNIQUE INDEX conversations_key ON conversations (channel, business_number, contact_id);
CREATE INDEX conversations_contact ON conversations (contact_id);
-- an RM's list, newest activity first; also the join of the resume query
CREATE INDEX conversations_assigned ON conversations (assigned_rm_id, last_message_at);
-- the supervisor's list (all conversations), newest activity first
CREATE INDEX conversations_activity ON conversations (last_message_at);

CREATE TABLE messages (
    id                  INTEGER PRIMARY KEY,
    conversation_id     INTEGER  NOT NULL REFERENCES conversations (id),
    seq                 INTEGER  NOT NULL,
    direction           TEXT     NOT NULL,
    channel             TEXT     NOT NULL,
    type                TEXT     NOT NULL,
    text                TEXT     NOT NULL,
    media               TEXT     NULL,
    template            TEXT     NULL,
    payload             TEXT     NULL,
    provider_message_id TEXT     NULL,
    client_msg_id       TEXT     NULL,
    rm_id               INTEGER  NULL,
    status              TEXT     NOT NULL,
    error               TEXT     NULL,
    provider_ts         DATETIME NULL,
    created_at          DATETIME NOT NULL,
    updated_at          DATETIME NOT NULL
);
-- provider id first so that a lookup by provider id alone uses it too;
-- NULLs (outbound not yet accepted) never collide.
CREATE UNIQUE INDEX messages_provider_id ON messages (provider_message_id, channel);
CREATE UNIQUE INDEX messages_client_msg_id ON messages (conversation_id, client_msg_id);
-- unread counts: inbound after the latest outbound, per conversation
CREATE INDEX messages_conversation_dir_seq ON messages (conversation_id, direction, seq);
-- the outbound queue re-driven after a restart
CREATE INDEX messages_pending ON messages (status, direction, id);

-- AUTOINCREMENT: an id is never reused, even after the newest row is deleted,
-- so the cursor only moves forward.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER  NOT NULL REFERENCES conversations (id),
    seq             INTEGER  NOT NULL,
    type            TEXT     NOT NULL,
    message_id      INTEGER  NULL REFERENCES messages (id),
    status          TEXT     NOT NULL DEFAULT '',
    detail          TEXT     NULL,
    created_at      DATETIME NOT NULL
);
CREATE UNIQUE INDEX events_conversation_seq ON events (conversation_id, seq);
-- resume per conversation by cursor
CREATE INDEX events_conversation_id ON events (conversation_id, id);
CREATE INDEX events_message ON events (message_id);

CREATE TABLE status_history (
    id         INTEGER PRIMARY KEY,
    message_id INTEGER  NOT NULL REFERENCES messages (id),
    status     TEXT     NOT NULL,
    at         DATETIME NOT NULL,
    raw        TEXT     NULL
);
CREATE UNIQUE INDEX status_history_message_status ON status_history (message_id, status);

CREATE TABLE webhook_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT     NOT NULL,
    path        TEXT     NOT NULL DEFAULT '',
    headers     TEXT     NULL,
    body        BLOB     NULL,
    received_at DATETIME NOT NULL,
    outcome     TEXT     NOT NULL
);
CREATE INDEX webhook_log_received ON webhook_log (received_at);

-- +goose Down
DROP TABLE webhook_log;
DROP TABLE status_history;
DROP TABLE events;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE contacts;
DROP TABLE rms;

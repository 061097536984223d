-- Voice calls (SQLite). Same tables and indexes as the MySQL schema.

-- +goose Up
CREATE TABLE calls (
    id                INTEGER PRIMARY KEY,
    conversation_id   INTEGER  NOT NULL REFERENCES conversations (id),
    rm_id             INTEGER  NULL,
    contact_phone     TEXT     NOT NULL,
    rm_phone          TEXT     NOT NULL DEFAULT '',
    caller_id         TEXT     NOT NULL DEFAULT '',
    first_leg         TEXT     NOT NULL,
    status            TEXT     NOT NULL,
    provider_call_sid TEXT     NULL,
    requested_at      DATETIME NOT NULL,
    answered_at       DATETIME NULL,
    started_at        DATETIME NULL,
    ended_at          DATETIME NULL,
    talk_seconds      INTEGER  NOT NULL DEFAULT 0,
    recording_url     TEXT     NOT NULL DEFAULT '',
    recording_path    TEXT     NOT NULL DEFAULT '',
    legs              TEXT     NULL,
    error             TEXT     NOT NULL DEFAULT '',
    updated_at        DATETIME NOT NULL
);
-- NULLs (not yet accepted by the dialler) never collide.
CREATE UNIQUE INDEX calls_provider_sid ON calls (provider_call_sid);
-- the calls of a conversation
CREATE INDEX calls_conversation ON calls (conversation_id, id);
-- unfinished calls by age (reconciliation)
CREATE INDEX calls_status_requested ON calls (status, requested_at, id);

CREATE TABLE call_status_history (
    id      INTEGER PRIMARY KEY,
    call_id INTEGER  NOT NULL REFERENCES calls (id),
    status  TEXT     NOT NULL,
    at      DATETIME NOT NULL,
    detail  TEXT     NULL
);
CREATE UNIQUE INDEX call_status_history_call_status ON call_status_history (call_id, status);

-- +goose Down
DROP TABLE call_status_history;
DROP TABLE calls;

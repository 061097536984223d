-- CRM outbox (SQLite). Same table and indexes as the MySQL schema.

-- +goose Up
-- AUTOINCREMENT: ids are never reused, so id order stays event order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT     NOT NULL,
    type            TEXT     NOT NULL,
    conversation_id INTEGER  NOT NULL DEFAULT 0,
    occurred_at     DATETIME NOT NULL,
    data            TEXT     NOT NULL,
    state           TEXT     NOT NULL,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at DATETIME NOT NULL,
    expires_at      DATETIME NOT NULL,
    last_error      TEXT     NOT NULL DEFAULT '',
    created_at      DATETIME NOT NULL,
    delivered_at    DATETIME NULL
);
CREATE UNIQUE INDEX outbox_event_id ON outbox (event_id);
-- the heads query: the oldest pending row of each conversation; also the
-- count of conversations behind
CREATE INDEX outbox_heads ON outbox (state, conversation_id, id);
-- dead letters (and any state) in id order
CREATE INDEX outbox_state_id ON outbox (state, id);
-- backlog: the oldest pending event
CREATE INDEX outbox_state_occurred ON outbox (state, occurred_at);

-- +goose Down
DROP TABLE outbox;

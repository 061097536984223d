-- CRM outbox: one row per event for the CRM, inserted in the same transaction
-- as the data it describes, delivered in id order per conversation.
--
-- data is the event's JSON object kept as text (LONGTEXT, not JSON), so that
-- every delivery attempt sends the bytes the write produced.
-- conversation_id is the ordering key, 0 for events of no conversation (no
-- foreign key for that reason).

-- +goose Up
CREATE TABLE IF NOT EXISTS outbox (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    event_id        VARCHAR(64)   NOT NULL,
    type            VARCHAR(64)   NOT NULL,
    conversation_id BIGINT        NOT NULL DEFAULT 0,
    occurred_at     DATETIME(6)   NOT NULL,
    data            LONGTEXT      NOT NULL,
    state           VARCHAR(16)   NOT NULL,
    attempts        INT           NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6)   NOT NULL,
    expires_at      DATETIME(6)   NOT NULL,
    last_error      VARCHAR(1000) NOT NULL DEFAULT '',
    created_at      DATETIME(6)   NOT NULL,
    delivered_at    DATETIME(6)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY outbox_event_id (event_id),
    -- the heads query: the oldest pending row of each conversation
    -- (MIN(id) ... WHERE state = 'pending' GROUP BY conversation_id);
    -- also the count of conversations behind
    KEY outbox_heads (state, conversation_id, id),
    -- dead letters (and any state) in id order
    KEY outbox_state_id (state, id),
    -- backlog: the oldest pending event
    KEY outbox_state_occurred (state, occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE outbox;

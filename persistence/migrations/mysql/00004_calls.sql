-- Voice calls: one row per click-to-call, and the history of the statuses
-- the dialler reported (one row per call and status, so a repeated callback
-- is recognised).
--
-- provider_call_sid is the dialler's id (Exotel CallSid), NULL until the
-- dialler accepted the call; NULLs never collide in the unique key.
-- legs is the dialler's per-leg report as JSON; NULL means "not known".

-- +goose Up
CREATE TABLE IF NOT EXISTS calls (
    id                BIGINT        NOT NULL AUTO_INCREMENT,
    conversation_id   BIGINT        NOT NULL,
    rm_id             BIGINT        NULL,
    contact_phone     VARCHAR(32)   NOT NULL,
    rm_phone          VARCHAR(32)   NOT NULL DEFAULT '',
    caller_id         VARCHAR(64)   NOT NULL DEFAULT '',
    first_leg         VARCHAR(16)   NOT NULL,
    status            VARCHAR(32)   NOT NULL,
    provider_call_sid VARCHAR(191)  NULL,
    requested_at      DATETIME(6)   NOT NULL,
    answered_at       DATETIME(6)   NULL,
    started_at        DATETIME(6)   NULL,
    ended_at          DATETIME(6)   NULL,
    talk_seconds      INT           NOT NULL DEFAULT 0,
    recording_url     VARCHAR(2048) NOT NULL DEFAULT '',
    recording_path    VARCHAR(1024) NOT NULL DEFAULT '',
    legs              JSON          NULL,
    error             VARCHAR(1000) NOT NULL DEFAULT '',
    updated_at        DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY calls_provider_sid (provider_call_sid),
    -- the calls of a conversation
    KEY calls_conversation (conversation_id, id),
    -- unfinished calls by age (reconciliation)
    KEY calls_status_requested (status, requested_at, id),
    CONSTRAINT calls_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS call_status_history (
    id      BIGINT      NOT NULL AUTO_INCREMENT,
    call_id BIGINT      NOT NULL,
    status  VARCHAR(32) NOT NULL,
    at      DATETIME(6) NOT NULL,
    detail  JSON        NULL,
    PRIMARY KEY (id),
    UNIQUE KEY call_status_history_call_status (call_id, status),
    CONSTRAINT call_status_history_call_fk FOREIGN KEY (call_id) REFERENCES calls (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE call_status_history;
DROP TABLE calls;

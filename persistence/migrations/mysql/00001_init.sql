-- Initial schema (MySQL / MariaDB).
--
-- Every table is utf8mb4 with a binary collation: text is stored byte for
-- byte (Devanagari, emoji) and identifiers compare exactly (provider ids such
-- as wamids are case-sensitive), the same way SQLite compares them.
-- Times are DATETIME(6) in UTC (the store sets the session time zone).
-- JSON columns hold what the providers sent; NULL means "none". (MariaDB
-- keeps the JSON text as sent; MySQL 8 stores a binary form and gives back
-- the same value, possibly reformatted.)
-- MySQL DDL is not transactional: IF NOT EXISTS lets a run that was cut off
-- half-way through this file apply it again.

-- +goose Up
CREATE TABLE IF NOT EXISTS rms (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    username      VARCHAR(191) NOT NULL,
    name          VARCHAR(255) NOT NULL DEFAULT '',
    phone         VARCHAR(32)  NOT NULL DEFAULT '',
    role          VARCHAR(32)  NOT NULL,
    password_hash VARCHAR(255) NOT NULL DEFAULT '',
    created_at    DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY rms_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS contacts (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    phone       VARCHAR(32)  NOT NULL,
    name        VARCHAR(255) NOT NULL DEFAULT '',
    owner_rm_id BIGINT       NULL,
    created_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY contacts_phone (phone),
    KEY contacts_owner (owner_rm_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS conversations (
    id              BIGINT      NOT NULL AUTO_INCREMENT,
    channel         VARCHAR(16) NOT NULL,
    business_number VARCHAR(64) NOT NULL,
    contact_id      BIGINT      NOT NULL,
    assigned_rm_id  BIGINT      NULL,
    last_seq        BIGINT      NOT NULL DEFAULT 0,
    last_message_at DATETIME(6) NULL,
    last_inbound_at DATETIME(6) NULL,
    created_at      DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY conversations_key (channel, business_number, contact_id),
    KEY conversations_contact (contact_id),
    -- an RM's list, newest activity first; also the join of the resume query
    KEY conversations_assigned (assigned_rm_id, last_message_at),
    -- the supervisor's list (all conversations), newest activity first
    KEY conversations_activity (last_message_at),
    CONSTRAINT conversations_contact_fk FOREIGN KEY (contact_id) REFERENCES contacts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS messages (
    id                  BIGINT       NOT NULL AUTO_INCREMENT,
    conversation_id     BIGINT       NOT NULL,
    seq                 BIGINT       NOT NULL,
    direction           VARCHAR(8)   NOT NULL,
    channel             VARCHAR(16)  NOT NULL,
    type                VARCHAR(64)  NOT NULL,
    text                MEDIUMTEXT   NOT NULL,
    media               JSON         NULL,
    template            JSON         NULL,
    payload             JSON         NULL,
    provider_message_id VARCHAR(191) NULL,
    client_msg_id       VARCHAR(191) NULL,
    rm_id               BIGINT       NULL,
    status              VARCHAR(16)  NOT NULL,
    error               JSON         NULL,
    provider_ts         DATETIME(6)  NULL,
    created_at          DATETIME(6)  NOT NULL,
    updated_at          DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    -- provider id first so that a lookup by provider id alone uses it too;
    -- NULLs (outbound not yet accepted) never collide.
    UNIQUE KEY messages_provider_id (provider_message_id, channel),
    UNIQUE KEY messages_client_msg_id (conversation_id, client_msg_id),
    -- unread counts: inbound after the latest outbound, per conversation
    KEY messages_conversation_dir_seq (conversation_id, direction, seq),
    -- the outbound queue re-driven after a restart
    KEY messages_pending (status, direction, id),
    CONSTRAINT messages_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS events (
    id              BIGINT      NOT NULL AUTO_INCREMENT, -- the global cursor
    conversation_id BIGINT      NOT NULL,
    seq             BIGINT      NOT NULL,
    type            VARCHAR(32) NOT NULL,
    message_id      BIGINT      NULL,
    status          VARCHAR(16) NOT NULL DEFAULT '',
    detail          JSON        NULL,
    created_at      DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY events_conversation_seq (conversation_id, seq),
    -- resume per conversation by cursor
    KEY events_conversation_id (conversation_id, id),
    KEY events_message (message_id),
    CONSTRAINT events_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT events_message_fk FOREIGN KEY (message_id) REFERENCES messages (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS status_history (
    id         BIGINT      NOT NULL AUTO_INCREMENT,
    message_id BIGINT      NOT NULL,
    status     VARCHAR(16) NOT NULL,
    at         DATETIME(6) NOT NULL,
    raw        JSON        NULL,
    PRIMARY KEY (id),
    UNIQUE KEY status_history_message_status (message_id, status),
    CONSTRAINT status_history_message_fk FOREIGN KEY (message_id) REFERENCES messages (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS webhook_log (
    id          BIGINT        NOT NULL AUTO_INCREMENT,
    provider    VARCHAR(32)   NOT NULL,
    path        VARCHAR(2048) NOT NULL DEFAULT '',
    headers     JSON          NULL,
    body        LONGBLOB      NULL,
    received_at DATETIME(6)   NOT NULL,
    outcome     TEXT          NOT NULL,
    PRIMARY KEY (id),
    KEY webhook_log_received (received_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE webhook_log;
DROP TABLE status_history;
DROP TABLE events;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE contacts;
DROP TABLE rms;

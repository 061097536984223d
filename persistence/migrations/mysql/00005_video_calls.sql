-- Video calls: one row per call (a room for two browsers), and one row per
-- participant's join (a reload joins again).
--
-- conversation_id is the conversation whose contact was invited, NULL for a
-- call between two RMs (no conversation). The foreign key holds for the
-- calls that have one; a NULL is never checked.
-- invitee_rm_id is the invited RM, NULL when the contact is invited.
-- contact_phone is the conversation's contact at creation, '' between RMs.
-- status moves forward only: created -> active -> ended; end_reason is ''
-- until ended. started_at is set when the call becomes active, ended_at when
-- it ends; duration_seconds is ended_at - started_at in whole seconds (0 when
-- it never started). joins counts the rows of video_call_joins.
-- video_call_joins.rm_id is the RM who joined, NULL for the contact (anyone
-- holding the link); rejoin says the same peer_id joined the call before.

-- +goose Up
CREATE TABLE IF NOT EXISTS video_calls (
    id               BIGINT      NOT NULL AUTO_INCREMENT,
    conversation_id  BIGINT      NULL,
    inviter_rm_id    BIGINT      NOT NULL,
    invitee_rm_id    BIGINT      NULL,
    contact_phone    VARCHAR(32) NOT NULL DEFAULT '',
    status           VARCHAR(16) NOT NULL,
    end_reason       VARCHAR(16) NOT NULL DEFAULT '',
    created_at       DATETIME(6) NOT NULL,
    expires_at       DATETIME(6) NOT NULL,
    started_at       DATETIME(6) NULL,
    ended_at         DATETIME(6) NULL,
    duration_seconds BIGINT      NOT NULL DEFAULT 0,
    joins            INT         NOT NULL DEFAULT 0,
    updated_at       DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    -- the video calls of a conversation
    KEY video_calls_conversation (conversation_id, id),
    -- unfinished calls by age (ended by a restart)
    KEY video_calls_status_created (status, created_at, id),
    CONSTRAINT video_calls_conversation_fk FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS video_call_joins (
    id            BIGINT      NOT NULL AUTO_INCREMENT,
    video_call_id BIGINT      NOT NULL,
    peer_id       VARCHAR(64) NOT NULL,
    rm_id         BIGINT      NULL,
    rejoin        TINYINT(1)  NOT NULL DEFAULT 0,
    at            DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    -- "did this peer join before" (rejoin); also a call's joins (a few rows,
    -- listed in id order)
    KEY video_call_joins_call_peer (video_call_id, peer_id),
    CONSTRAINT video_call_joins_call_fk FOREIGN KEY (video_call_id) REFERENCES video_calls (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE video_call_joins;
DROP TABLE video_calls;

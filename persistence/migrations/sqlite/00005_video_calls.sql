-- Video calls (SQLite). Same tables and indexes as the MySQL schema (see its
-- comments): conversation_id is NULL for a call between two RMs, and the
-- foreign key holds for the calls that have one.

-- +goose Up
CREATE TABLE video_calls (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER  NULL REFERENCES conversations (id),
    inviter_rm_id    INTEGER  NOT NULL,
    invitee_rm_id    INTEGER  NULL,
    contact_phone    TEXT     NOT NULL DEFAULT '',
    status           TEXT     NOT NULL,
    end_reason       TEXT     NOT NULL DEFAULT '',
    created_at       DATETIME NOT NULL,
    expires_at       DATETIME NOT NULL,
    started_at       DATETIME NULL,
    ended_at         DATETIME NULL,
    duration_seconds INTEGER  NOT NULL DEFAULT 0,
    joins            INTEGER  NOT NULL DEFAULT 0,
    updated_at       DATETIME NOT NULL
);
-- the video calls of a conversation
CREATE INDEX video_calls_conversation ON video_calls (conversation_id, id);
-- unfinished calls by age (ended by a restart)
CREATE INDEX video_calls_status_created ON video_calls (status, created_at, id);

CREATE TABLE video_call_joins (
    id            INTEGER PRIMARY KEY,
    video_call_id INTEGER  NOT NULL REFERENCES video_calls (id),
    peer_id       TEXT     NOT NULL,
    rm_id         INTEGER  NULL,
    rejoin        INTEGER  NOT NULL DEFAULT 0,
    at            DATETIME NOT NULL
);
-- "did this peer join before" (rejoin); also a call's joins in id order
CREATE INDEX video_call_joins_call_peer ON video_call_joins (video_call_id, peer_id);

-- +goose Down
DROP TABLE video_call_joins;
DROP TABLE video_calls;

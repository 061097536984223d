-- The last message of a conversation (the conversation list's preview) is
-- one probe of this index.

-- +goose Up
CREATE INDEX messages_conversation_seq ON messages (conversation_id, seq);

-- +goose Down
DROP INDEX messages_conversation_seq ON messages;

// Package msg holds the protobuf messages exchanged between actor kinds
// (conversation, RM session, provider). Regenerate with `make proto`.
package msg

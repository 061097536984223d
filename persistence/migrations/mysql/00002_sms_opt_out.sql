-- SMS opt-out: a contact who sent STOP (or a variant) gets no SMS until START.

-- +goose Up
ALTER TABLE contacts ADD COLUMN sms_opted_out TINYINT(1) NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE contacts DROP COLUMN sms_opted_out;

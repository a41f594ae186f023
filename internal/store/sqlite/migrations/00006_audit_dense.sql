-- The database itself refuses an audit record that does not continue the
-- log (its seq must be one more than the highest), whoever inserts it.
-- Such an insert is skipped rather than failed, so a writer that finds
-- another got there first sees no row inserted and can carry on in the
-- same transaction; in Postgres an error would end the transaction. The
-- check replaces a query of its own before each append.

-- +goose Up
-- +goose StatementBegin
CREATE TRIGGER audit_records_continue_log BEFORE INSERT ON audit_records
WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM audit_records) + 1, 0)
BEGIN
    SELECT RAISE(IGNORE);
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER audit_records_continue_log;

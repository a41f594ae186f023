-- The database itself refuses an audit record that does not continue the
-- log (its seq must be one more than the highest), whoever inserts it.
-- Such an insert is skipped rather than failed, so a writer that finds
-- another got there first sees no row inserted and can carry on in the
-- same transaction, which an error would end. The check replaces a query
-- of its own before each append.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION audit_records_continue_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM COALESCE((SELECT MAX(seq) FROM audit_records) + 1, 0) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_records_continue_log BEFORE INSERT ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_continue_log();

-- +goose Down
DROP TRIGGER audit_records_continue_log ON audit_records;
DROP FUNCTION audit_records_continue_log();

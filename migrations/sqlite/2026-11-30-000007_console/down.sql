DROP INDEX issues_due;
ALTER TABLE issues DROP COLUMN created_by;
ALTER TABLE issues DROP COLUMN send_at;
DROP TABLE login_failures;
ALTER TABLE editors DROP COLUMN session_version;

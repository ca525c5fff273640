-- Least privilege for the log (ADR-0026): the running service connects as `finteqx_runtime`, a
-- role that owns nothing. It may append events and signed checkpoints and read them, but not
-- update, delete or truncate them, nor alter the tables or switch their append-only triggers off
-- (only a table's owner may): whoever holds the service's credentials cannot rewrite history.
-- Migrations, rebuilds and the operator CLI run as the owner (the role of database.url).
--
-- Roles belong to the cluster, not the database: created once, tolerating a concurrent creator.
-- It logs in without a password where the server trusts local connections (development, tests);
-- production sets one (ALTER ROLE finteqx_runtime PASSWORD …) and database.runtime_password.
DO
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'finteqx_runtime') THEN
        CREATE ROLE finteqx_runtime LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO finteqx_runtime;

-- Read models, queues, sessions, keys and limits: the service keeps them.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO finteqx_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO finteqx_runtime;
-- The log and its signed checkpoints: append and read only.
REVOKE UPDATE, DELETE, TRUNCATE ON events, log_checkpoints FROM finteqx_runtime;
-- The migration history is the owner's.
REVOKE ALL ON _sqlx_migrations FROM finteqx_runtime;

-- Tables and sequences that later migrations create get the same grants; a later append-only
-- table must revoke UPDATE and DELETE in its own migration, as above.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO finteqx_runtime;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT ON SEQUENCES TO finteqx_runtime;

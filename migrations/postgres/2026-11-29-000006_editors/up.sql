-- Editors' accounts for the console; only an argon2id hash of each password is kept.
CREATE TABLE editors (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

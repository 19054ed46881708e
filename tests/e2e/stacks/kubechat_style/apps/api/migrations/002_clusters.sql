CREATE TABLE clusters (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) UNIQUE NOT NULL,
    owner_id INTEGER REFERENCES users(id)
);

-- The system of record: knowledge bases, documents (with their full extracted body, so a citation
-- can always be shown), chunks with their embedding, and BM25 postings. Everything that belongs to
-- one document version is written in one transaction by cairn.index.store.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge_bases (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id           bigserial PRIMARY KEY,
    kb_id        int NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    source       text NOT NULL,
    title        text NOT NULL DEFAULT '',
    mime         text NOT NULL,
    content_hash text NOT NULL,
    version      int NOT NULL DEFAULT 1,
    size_bytes   bigint NOT NULL,
    page_count   int,
    body         text NOT NULL,
    page_spans   jsonb NOT NULL DEFAULT '[]',
    warnings     text[] NOT NULL DEFAULT '{}',
    metadata     jsonb NOT NULL DEFAULT '{}',
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kb_id, source)
);

CREATE TABLE chunks (
    id           bigserial PRIMARY KEY,
    document_id  bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    kb_id        int NOT NULL,
    ordinal      int NOT NULL,
    text         text NOT NULL,
    start_char   int NOT NULL CHECK (start_char >= 0),
    end_char     int NOT NULL CHECK (end_char > start_char),
    page         int,
    heading_path text[] NOT NULL DEFAULT '{}',
    length       int NOT NULL CHECK (length >= 0),
    embedding    vector NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_kb_idx ON chunks (kb_id);

-- BM25 postings; dl (the chunk's analysed length) is copied here so that scoring a term is an
-- index-only scan, with no join to chunks until the final top-k.
CREATE TABLE postings (
    kb_id    int NOT NULL,
    term     text NOT NULL,
    chunk_id bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    tf       int NOT NULL CHECK (tf > 0),
    dl       int NOT NULL,
    PRIMARY KEY (kb_id, term, chunk_id) INCLUDE (tf, dl)
);
CREATE INDEX postings_chunk_idx ON postings (chunk_id);

-- Collection statistics for BM25 (N and total length per knowledge base), kept exact by
-- statement-level triggers in the same transaction as the chunk writes.
CREATE TABLE kb_stats (
    kb_id        int PRIMARY KEY REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    chunk_count  bigint NOT NULL DEFAULT 0,
    total_length bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION kb_stats_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kb_stats AS s (kb_id, chunk_count, total_length)
    SELECT kb_id, count(*), sum(length) FROM new_rows GROUP BY kb_id
    ON CONFLICT (kb_id) DO UPDATE
        SET chunk_count = s.chunk_count + EXCLUDED.chunk_count,
            total_length = s.total_length + EXCLUDED.total_length;
    RETURN NULL;
END $$;

CREATE FUNCTION kb_stats_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kb_stats AS s
       SET chunk_count = s.chunk_count - d.n, total_length = s.total_length - d.len
      FROM (SELECT kb_id, count(*) AS n, sum(length) AS len FROM old_rows GROUP BY kb_id) AS d
     WHERE s.kb_id = d.kb_id;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_stats_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_stats_after_insert();
CREATE TRIGGER chunks_stats_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_stats_after_delete();

-- Which embedder built the vectors: querying with another one would silently return garbage.
CREATE TABLE index_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Chat sessions live in the database so that any cairn process (CLI or server replica) can continue them.
CREATE TABLE chat_sessions (
    id         uuid PRIMARY KEY,
    kb_names   text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_messages (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('user', 'assistant')),
    content    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_session_idx ON chat_messages (session_id, id);

-- What the guards found in a chunk at ingestion (e.g. 'injection': text that tries to instruct the
-- model). The answer stage quotes flagged passages as data instead of handing them over as context.
ALTER TABLE chunks ADD COLUMN flags text[] NOT NULL DEFAULT '{}';

-- photdb 0009: galsources laid out for 10^9 rows (measured: benchmarks/galsources_scale.py).
-- depends: 0002.pipeline-schema 0005.shared-database
--
-- * Columns in alignment order (8-byte, then 4-byte): the 0002 order padded
--   8 bytes per row (galimage_id before ra, y before ref_id); a row is now
--   24 (header) + 80 (data) + 4 (line pointer) bytes.
-- * No ref_id index. A forced measurement is made at its reference source's
--   position and stored with exactly that (ra, dec) (photdb.pipeline.search),
--   so a reference source's light curve is the q3c index's equality lookup
--   q3c_ang2ipix(s.ra, s.dec) = q3c_ang2ipix(r.ra, r.dec) AND s.ref_id = r.id
--   (photdb.survey.queries). The btree on ref_id cost 14 bytes per row and
--   cut COPY into the indexed table by ~2x; the equal q3c keys of a star's
--   epochs are deduplicated by the btree, so the q3c index costs little more
--   than its posting lists.
-- * The primary key is appended to in order (write_sources hands out ids in
--   the order rows are written): leaves are packed full (fillfactor 100).
-- * Ids are reserved from a sequence with a session cache, so one writer's
--   ids for an image are one contiguous block (one round trip, no per-row
--   traffic); gaps after a session ends are harmless for a bigint.
-- On an existing database the table is rewritten in its physical order (one
-- pass; the indexes are rebuilt once, after the copy).

CREATE TABLE galsources_0009 (
    id bigint NOT NULL,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    ref_id bigint,
    galimage_id integer NOT NULL,
    mag real,
    magerr real,
    magerr_raw real,
    flux real,
    dflux real,
    x real,
    y real,
    qf real,
    rchi2 real,
    fracflux real,
    flags integer NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_insert_scale_factor = 0.01);

INSERT INTO galsources_0009
    (id, ra, dec, ref_id, galimage_id, mag, magerr, magerr_raw, flux, dflux, x, y,
     qf, rchi2, fracflux, flags)
SELECT id, ra, dec, ref_id, galimage_id, mag, magerr, magerr_raw, flux, dflux, x, y,
       qf, rchi2, fracflux, flags
FROM galsources;

ALTER SEQUENCE galsources_id_seq OWNED BY galsources_0009.id CACHE 100000;
ALTER TABLE galsources_0009 ALTER COLUMN id SET DEFAULT nextval('galsources_id_seq');
DROP TABLE galsources;
ALTER TABLE galsources_0009 RENAME TO galsources;
ALTER TABLE galsources ADD CONSTRAINT galsources_pkey PRIMARY KEY (id) WITH (fillfactor = 100);
CREATE INDEX galsources_q3c_idx ON galsources (q3c_ang2ipix(ra, dec));
CREATE INDEX galsources_galimage_idx ON galsources USING brin (galimage_id);
COMMENT ON TABLE galsources IS 'every measurement: reference catalogues (ref_id NULL) and forced photometry on search images';
COMMENT ON COLUMN galsources.ref_id IS
    'reference source of a forced measurement (NULL: is one); the row has that source''s ra, dec';
ANALYZE galsources;

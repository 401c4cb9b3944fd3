-- photdb 0002: the crowded-field pipeline tables (galactic notebook design).
-- depends: 0001.archive-schema
--
-- An image is stored once: its archive columns live in `observations`; its
-- pipeline state lives in `galimages`, whose primary key *is* the observation
-- id. One ingested file is one `galexposures` row.

CREATE TABLE galexposures (
    id serial PRIMARY KEY,
    filename text NOT NULL,
    path text NOT NULL,
    sha256 char(64) NOT NULL UNIQUE,
    mjd double precision NOT NULL,
    filter varchar(16),
    is_reference boolean NOT NULL DEFAULT false,
    exptime_s double precision,
    n_images integer NOT NULL DEFAULT 0,
    telescope_id integer REFERENCES telescopes (id),
    instrument_id integer REFERENCES instruments (id),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, filename)
);
COMMENT ON COLUMN galexposures.mjd IS 'MJD at mid-exposure, UTC scale (astropy)';
COMMENT ON COLUMN galexposures.filter IS 'normalised band name (the FILTER map), e.g. r';
CREATE INDEX galexposures_filter_mjd_idx ON galexposures (filter, mjd);

CREATE TABLE galprovenance (
    id char(16) PRIMARY KEY,
    code_version text NOT NULL,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE galimages (
    id integer PRIMARY KEY REFERENCES observations (id) ON DELETE CASCADE,
    galexposure_id integer NOT NULL REFERENCES galexposures (id) ON DELETE CASCADE,
    hdu smallint NOT NULL,
    extname varchar(16),
    ccdnum smallint,
    naxis1 integer,
    naxis2 integer,
    reference integer REFERENCES galimages (id) ON DELETE SET NULL,
    status varchar(12) NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'done', 'failed')),
    failure text,
    processed_at timestamptz,
    provenance_id char(16) REFERENCES galprovenance (id),
    code_version text,
    zp real,
    zp_scatter real,
    cheb_coeffs jsonb,
    chi2nu real,
    error_factor real,
    astrom_rms_arcsec real,
    astrom_nmatch integer,
    seeing_fwhm_arcsec real,
    sky_level real,
    n_detected integer,
    n_forced integer,
    n_saved integer,
    n_variables integer,
    wcs_header text,
    details jsonb,
    UNIQUE (galexposure_id, hdu)
);
COMMENT ON COLUMN galimages.reference IS 'the reference image whose catalogue this image was forced at';
CREATE INDEX galimages_exposure_idx ON galimages (galexposure_id);
CREATE INDEX galimages_reference_idx ON galimages (reference);
CREATE INDEX galimages_status_idx ON galimages (status);

-- Deleting a galexposures row removes its galimages (FK cascade); this trigger
-- removes the matching observations rows too, so an image never half-exists.
CREATE FUNCTION galimages_drop_observation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM observations WHERE id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER galimages_drop_observation AFTER DELETE ON galimages
    FOR EACH ROW EXECUTE FUNCTION galimages_drop_observation();

-- The giant table: every measurement, ~10^7 rows per DECam exposure.
-- Not partitioned: measured (benchmarks/galsources_layout.py) a survey field
-- lies inside one sky tile, so sky partitions give cones nothing while every
-- lookup by id or ref_id must probe each partition (7-20x slower). Each
-- image's rows are COPYed sorted by position (Z-order), which is what keeps a
-- cone to one short run of pages per epoch -- no CLUSTER, ever. No foreign
-- keys: row-level RI checks cost on 10^7-row COPYs; galimages deletion cleans
-- up through the trigger below. `ref_id` is the reference source a forced
-- measurement belongs to (named so that the notebook's unqualified
-- `refsource_id` stays unambiguous).
CREATE TABLE galsources (
    id bigserial PRIMARY KEY,
    galimage_id integer NOT NULL,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    mag real,
    magerr real,
    magerr_raw real,
    flux real,
    dflux real,
    x real,
    y real,
    ref_id bigint,
    qf real,
    rchi2 real,
    fracflux real,
    flags integer NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_insert_scale_factor = 0.01);
COMMENT ON TABLE galsources IS 'every measurement: reference catalogues (ref_id NULL) and forced photometry on search images';

CREATE INDEX galsources_q3c_idx ON galsources (q3c_ang2ipix(ra, dec));
CREATE INDEX galsources_galimage_idx ON galsources USING brin (galimage_id);
CREATE INDEX galsources_ref_idx ON galsources (ref_id);

CREATE TABLE galvarobjs (
    id bigserial PRIMARY KEY,
    galsource_id bigint NOT NULL,
    refsource_id bigint NOT NULL,
    galimage_id integer NOT NULL REFERENCES galimages (id) ON DELETE CASCADE,
    dmag real,
    significance real
);
CREATE INDEX galvarobjs_refsource_idx ON galvarobjs (refsource_id);
CREATE INDEX galvarobjs_galsource_idx ON galvarobjs (galsource_id);
CREATE INDEX galvarobjs_galimage_idx ON galvarobjs (galimage_id);

CREATE FUNCTION galimages_drop_sources() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM galsources WHERE galimage_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER galimages_drop_sources AFTER DELETE ON galimages
    FOR EACH ROW EXECUTE FUNCTION galimages_drop_sources();

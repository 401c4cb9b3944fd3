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

-- The giant table. Range-partitioned by sky tile on the q3c pixel number so a
-- cone search prunes to one or two partitions and no partition ever needs
-- CLUSTER; each image's rows are COPYed sorted by position. No foreign keys:
-- row-level RI checks would halve COPY throughput; galimages deletion cleans up
-- through the trigger below. `ref_id` is the reference source a forced
-- measurement belongs to (named so that the notebook's unqualified
-- `refsource_id` stays unambiguous).
CREATE SEQUENCE galsources_id_seq AS bigint;
CREATE TABLE galsources (
    id bigint NOT NULL DEFAULT nextval('galsources_id_seq'),
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
) PARTITION BY RANGE (q3c_ang2ipix(ra, dec));
ALTER SEQUENCE galsources_id_seq OWNED BY galsources.id;
COMMENT ON TABLE galsources IS 'every measurement: reference catalogues (ref_id NULL) and forced photometry on search images';

-- 6 cube faces x 16 tiles = 96 partitions of about 430 square degrees each.
DO $$
DECLARE
    n integer := 96;
    span numeric := 6 * power(2::numeric, 60);
    lo numeric;
    hi numeric;
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        lo := floor(span * i / n);
        hi := floor(span * (i + 1) / n);
        EXECUTE format(
            'CREATE TABLE galsources_p%s PARTITION OF galsources FOR VALUES FROM (%s) TO (%s)',
            lpad(i::text, 2, '0'),
            CASE WHEN i = 0 THEN 'MINVALUE' ELSE lo::text END,
            CASE WHEN i = n - 1 THEN 'MAXVALUE' ELSE hi::text END);
    END LOOP;
END
$$;

CREATE INDEX galsources_q3c_idx ON galsources (q3c_ang2ipix(ra, dec));
CREATE INDEX galsources_id_idx ON galsources (id);
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

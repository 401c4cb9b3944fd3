-- photdb 0007: new sources (transients) found in the residuals of search images.
-- depends: 0005.shared-database
--
-- galcandidates: per search image, the significant residual sources of the forced fit
-- that match no reference source (photdb.newsources). A candidate seen on several
-- search images becomes a reference source: a galsources row with ref_id NULL on the
-- reference image, measured there by forced photometry, so every galvarobjs row still
-- points at a reference galsources row. galnewsources flags those rows as added, with
-- the search image that found them and the reference flux the search images are
-- compared with (in flux: a new source's reference magnitude may not exist).

CREATE TABLE galnewsources (
    refsource_id bigint PRIMARY KEY,
    reference_id integer NOT NULL REFERENCES galimages (id) ON DELETE CASCADE,
    found_by integer REFERENCES galimages (id) ON DELETE SET NULL,
    n_images integer NOT NULL,
    ref_flux double precision NOT NULL,
    ref_dflux double precision NOT NULL,
    mean_mag real,
    added_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE galnewsources IS
    'reference sources added after the reference was made: new sources seen on >= 2 search images';
COMMENT ON COLUMN galnewsources.refsource_id IS 'the galsources row (ref_id NULL) of the added source';
COMMENT ON COLUMN galnewsources.found_by IS 'the first search image it was seen on';
COMMENT ON COLUMN galnewsources.ref_flux IS
    'forced flux on the reference, calibrated: 10^(-0.4 mag) units (may be <= 0)';
CREATE INDEX galnewsources_reference_idx ON galnewsources (reference_id);

CREATE TABLE galcandidates (
    id bigserial PRIMARY KEY,
    galimage_id integer NOT NULL REFERENCES galimages (id) ON DELETE CASCADE,
    reference_id integer NOT NULL,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    x real,
    y real,
    flux real,
    dflux real,
    mag real,
    magerr real,
    snr real,
    sharpness real,
    status varchar(12) NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'added', 'on_reference')),
    refsource_id bigint
);
COMMENT ON TABLE galcandidates IS
    'new-source candidates per search image (residual sources matching no reference source)';
COMMENT ON COLUMN galcandidates.status IS
    'new: not yet confirmed; added: part of an added source (refsource_id); on_reference: as bright on the reference';
CREATE INDEX galcandidates_q3c_idx ON galcandidates (q3c_ang2ipix(ra, dec));
CREATE INDEX galcandidates_image_idx ON galcandidates (galimage_id);
CREATE INDEX galcandidates_open_idx ON galcandidates (reference_id) WHERE status = 'new';


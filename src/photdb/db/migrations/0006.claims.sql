-- photdb 0006: claims and leases -- the database says who computes which image.
-- depends: 0005.shared-database
--
-- Before `photdb process` (any run, on any machine, any Dask worker) computes an
-- image it claims it: one short transaction locks the galimages row with
-- FOR UPDATE SKIP LOCKED and writes a galclaims row naming the claimant, a
-- random token and a lease expiry. While the image computes, a heartbeat thread
-- on the worker renews the lease. Nobody else may claim the image while its
-- lease runs; once it has expired (the worker died), the next claim takes it
-- over and counts one more attempt. The transaction that stores the image
-- locks its claim row and checks the token: a claim taken over after expiry
-- cannot store the same image twice. The row stays after the image is finished
-- (finished_at, outcome): how many attempts it took, and who did it.

CREATE TABLE galclaims (
    galimage_id integer PRIMARY KEY REFERENCES galimages (id) ON DELETE CASCADE,
    token uuid NOT NULL,
    claimant text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    finished_at timestamptz,
    outcome varchar(12) CHECK (outcome IN ('done', 'failed', 'released'))
);
COMMENT ON TABLE galclaims IS
    'who computes (computed) each image: claimant, lease, heartbeat, attempts';
COMMENT ON COLUMN galclaims.claimant IS 'host:pid of the process computing the image (and its Dask worker name)';
COMMENT ON COLUMN galclaims.token IS 'random per claim; the storing transaction must still hold it';
COMMENT ON COLUMN galclaims.lease_until IS 'the claim is the claimant''s until then (renewed by its heartbeat)';
COMMENT ON COLUMN galclaims.attempts IS 'how many times the image was claimed (more than 1: a worker died or it was retried)';
COMMENT ON COLUMN galclaims.outcome IS 'done, failed, or released (given up unfinished); NULL while running';
-- the images being computed now, for the wait loop and monitoring
CREATE INDEX galclaims_running_idx ON galclaims (lease_until) WHERE finished_at IS NULL;

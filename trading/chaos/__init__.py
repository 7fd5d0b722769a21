"""The chaos soak: the whole system in LIVE mode against the simulated venue, under random faults.

    manage.py chaos --seconds 600 [--seed N] [--coins 6|BTC,ETH,...] [--workers 2] [--database-url URL] [--keep]

What runs (every process real, as `infra/demo.py` starts them): a private redis-server on a free port
(restarted now and then), the venue in this process (so that its internal orders and accounts can
be read for the final check) with one account for one API key on both dialects, a feed per
exchange, the dispatcher, N Celery workers (`-n w1@%h`, `-n w2@%h`, prefork `-c 1`) and beat, in a
scratch database of the run's own (`kimp_chaos_<random>` on the PostgreSQL server at 127.0.0.1:5432
when one answers, else a temporary SQLite file), migrated first and dropped at the end unless --keep.

The run: `manage.py reconcile` adopts the venue's balances as deposits; the premiums of the chosen
coins are forced to 1.2-3 % and flipped in sign every few seconds, so that signals keep coming and
take-profit closes keep the positions turning over. Meanwhile, at random moments: fault rules
(`POST /_venue/control` `fault`) on order entry, look-ups, cancels and accounts of both venues
(refuse_429/418, unavailable_before, timeout_before, delay_after, error_5xx_after, html_after,
reset_before, reset_after; `skip` makes some hit a second leg or a hedge), a Binance clock offset of
+-2 s, a venue quote balance moved away and back (insufficient balance), SIGKILL of a worker (its
whole process group, restarted at once) and a restart of Redis (stopped, ~2 s, started on the same port).

Then: faults cleared, the kill switch engaged, beat, dispatcher and feeds stopped, the workers given
a warm shutdown (their pairs finish), `resume_pending` with a live executor until no live pair is
open (or a bound passes), `reconcile`, and the invariant checked against the venue's own state:

* every order the venue holds for our key is in the ledger once, with the executed quantity of its
  booked fills, and no ledger order has fills the venue does not know;
* no client id appears twice on a venue (an order sent twice);
* ledger balances equal the venue's balances (free + locked) exactly, per venue and asset;
* per pair, the coin bought equals the coin sold, or the remainder is declared dust, or the pair is
  flagged with a `leg_risk` guard event naming it; anything else is unflagged exposure.

The last line is `chaos: pairs=... faults=... kills=... redis_restarts=... unflagged_exposure=...
doubled_orders=... ledger_matches_venue=yes|no`; the exit status is non-zero when any of the last
three fails (the details are printed above it).

The command runs itself twice: the outer process creates and drops the scratch database and picks
the ports; the inner one (`--inner`, started with the live-mode environment) does everything else,
so that its own Django settings are those of the system it drives.
"""

"""The deliverer: sends email jobs over SMTP at most once per job id.

Without I/O: `config` (what it is configured with), `messages` (the job contract, the MIME
message, what an SMTP failure means, outcome records), `schedule` (due-time and offset
bookkeeping), `pending` (the partitions owned and the jobs not finished), `ledger` (what the
deliveries topic says was claimed and finished: the durable record of at most once).

The shell: `deliverer` runs the parts below; `consumer` (Kafka, the jobs topic), `rebuild`
(the deliveries topic read back into the ledger), `due` (the scheduler task), `senders`
(claim, send, retry), `publisher` (claims and outcomes to Kafka and Redis), `claims` (Redis,
the fast path), `smtp` (the SMTP connection), `availability` (waiting out Kafka),
`web_server` (/health, /metrics, /admin/clock).
"""

"""The deliverer: sends email jobs over SMTP at most once per job id.

Without I/O: `config` (what it is configured with), `messages` (the job contract, the MIME
message, what an SMTP failure means, outcome records), `schedule` (due-time and offset
bookkeeping), `pending` (the partitions owned and the jobs not finished).

The shell: `deliverer` runs the parts below; `consumer` (Kafka, the jobs topic), `due`
(the scheduler task), `senders` (claim, send, retry), `publisher` (outcomes to Redis and
Kafka), `claims` (Redis), `smtp` (the SMTP connection), `availability` (waiting out Redis
or Kafka), `web_server` (/health, /metrics, /admin/clock).
"""

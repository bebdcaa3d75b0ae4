"""`tidemail ingest`: Segment's HTTP tracking API in front of the events topic."""

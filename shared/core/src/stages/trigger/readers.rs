//! Record readers: JSON array, NDJSON and CSV, streamed.

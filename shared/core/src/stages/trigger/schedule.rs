//! Schedules: cron with time zones, the minute tick.

"""`roi bench`: the service on real servers under fixed-concurrency load, measured against its own `/health` floor."""

//! moto in server mode on 127.0.0.1, from the venv .ci/run prepares.

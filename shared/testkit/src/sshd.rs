//! OpenSSH's sshd on a loopback port with a temporary host key and user key.

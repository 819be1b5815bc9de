//! A scriptable HTTP target on 127.0.0.1: records what it receives, answers as told (slowly, 429, 500, dropped connections).

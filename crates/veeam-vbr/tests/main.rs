//! One integration-test binary (links once instead of once per file).

mod it;

mod archive;
mod examples;
mod http;
mod secrets;
mod server;
mod tls;

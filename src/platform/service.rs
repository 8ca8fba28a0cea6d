//! `--windows-service`: the exporter as a Windows service. The process connects to the service
//! control manager (SCM) at once and reports itself running before it loads anything, as
//! windows_exporter does, so a slow start (a large configuration, a slow disk) never trips the
//! SCM's start timeout; problems then go to the log file and the service stops with an error,
//! which the restart-on-failure actions the MSI sets act on. A stop or a system shutdown runs the
//! same graceful shutdown as Ctrl+C or SIGTERM: stop scheduling, unmount, log off.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
use windows_service::{define_windows_service, service_dispatcher};

use crate::app::{self, Flags};

/// The service name the MSI installs; the SCM checks it for own-process services.
pub const SERVICE_NAME: &str = "veeam-restore-exporter";

/// The flags parsed in `main`, taken by the service's main function on the SCM's thread.
static FLAGS: Mutex<Option<Flags>> = Mutex::new(None);
/// The exporter's exit code, for `main` to return once the dispatcher returns.
static EXIT: AtomicU8 = AtomicU8::new(1);

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped.
pub fn run(mut flags: Flags) -> ExitCode {
    if flags.log_file.is_none() {
        flags.log_file = Some(super::program_data().join("veeam-restore-exporter.log"));
    }
    *FLAGS.lock().unwrap_or_else(|p| p.into_inner()) = Some(flags);
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => ExitCode::from(EXIT.load(Ordering::SeqCst)),
        Err(e) => {
            eprintln!(
                "--windows-service: cannot connect to the service control manager ({e}); without the flag it runs in this console"
            );
            ExitCode::FAILURE
        }
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(flags) = FLAGS.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
    let grace = crate::duration::parse(&flags.grace_period).unwrap_or(Duration::from_secs(120));
    let stop = CancellationToken::new();
    let on_control = stop.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Preshutdown | ServiceControl::Shutdown => {
            on_control.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else { return };
    report(status, ServiceState::Running, 0, Duration::ZERO);
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(async {
            tokio::spawn(stop_pending(status, stop.clone(), grace));
            app::run_until(flags, stop).await
        }),
        Err(_) => ExitCode::FAILURE,
    };
    let failed = code != ExitCode::SUCCESS;
    EXIT.store(u8::from(failed), Ordering::SeqCst);
    report(status, ServiceState::Stopped, u32::from(failed), Duration::ZERO);
}

/// Once a stop is asked for, tells the SCM the stop is progressing (a new checkpoint every few
/// seconds, within the grace period) so that it waits for the unmounts instead of killing us.
async fn stop_pending(status: ServiceStatusHandle, stop: CancellationToken, grace: Duration) {
    stop.cancelled().await;
    let hint = Duration::from_secs(10);
    let mut checkpoint = 1;
    let deadline = tokio::time::Instant::now() + grace + hint;
    while tokio::time::Instant::now() < deadline {
        report(status, ServiceState::StopPending, checkpoint, hint);
        checkpoint += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Reports a state; `value` is the checkpoint while stopping and the exit code once stopped.
fn report(status: ServiceStatusHandle, state: ServiceState, value: u32, wait_hint: Duration) {
    let controls_accepted = match state {
        ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN,
        _ => ServiceControlAccept::empty(),
    };
    let (checkpoint, exit_code) = match state {
        ServiceState::Stopped if value != 0 => (0, ServiceExitCode::ServiceSpecific(value)),
        ServiceState::Stopped => (0, ServiceExitCode::NO_ERROR),
        _ => (value, ServiceExitCode::NO_ERROR),
    };
    let _ = status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint,
        wait_hint,
        process_id: None,
    });
}

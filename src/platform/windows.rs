//! Windows: console events, the state directory's ACL, `%ProgramData%` paths and process metrics.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::signal::windows::{
    CtrlBreak, CtrlC, CtrlClose, CtrlShutdown, ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown,
};
use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT,
    SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, GetTokenInformation,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SetFileSecurityW, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessHandleCount, GetProcessTimes, OpenProcessToken,
};
use windows_sys::Win32::UI::Shell::{FOLDERID_ProgramData, SHGetKnownFolderPath};

use super::Event;

/// Ctrl+C, Ctrl+Break, closing the console and system shutdown all stop; Windows has no reload
/// signal (`POST /-/reload` and `--config.auto-reload-interval` remain).
pub struct Signals {
    c: CtrlC,
    brk: CtrlBreak,
    close: CtrlClose,
    shutdown: CtrlShutdown,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        Ok(Signals { c: ctrl_c()?, brk: ctrl_break()?, close: ctrl_close()?, shutdown: ctrl_shutdown()? })
    }

    /// Waits for the next console event.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.c.recv() => Event::Stop,
            _ = self.brk.recv() => Event::Stop,
            _ = self.close.recv() => Event::Stop,
            _ = self.shutdown.recv() => Event::Stop,
        }
    }
}

/// `%ProgramData%\veeam-restore-exporter`: where the MSI puts the configuration, and where the
/// state and the service's log live.
pub fn program_data() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| known_program_data().unwrap_or_else(|| PathBuf::from(r"C:\ProgramData")))
        .join("veeam-restore-exporter")
}

/// The ProgramData known folder, which is what the MSI's `CommonAppDataFolder` resolves to. The
/// environment variable can differ (under Wine a service sees `C:\users\Public`).
fn known_program_data() -> Option<PathBuf> {
    let mut path: *mut u16 = std::ptr::null_mut();
    // SAFETY: the returned string is NUL-terminated and freed with CoTaskMemFree, even on failure.
    unsafe {
        let hr = SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, std::ptr::null_mut(), &mut path);
        let found = (hr >= 0 && !path.is_null()).then(|| {
            let len = (0..).take_while(|&i| *path.add(i) != 0).count();
            PathBuf::from(std::ffi::OsString::from_wide(std::slice::from_raw_parts(path, len)))
        });
        CoTaskMemFree(path as *const std::ffi::c_void);
        found
    }
}

/// A service's working directory is `System32`, so the default is absolute.
pub fn default_storage_path() -> PathBuf {
    program_data().join("data")
}

/// Where the MSI installs the configuration.
pub fn default_config_file() -> Option<PathBuf> {
    Some(program_data().join("config.yml"))
}

/// Creates a directory with the private ACL (see [`make_private`]).
pub fn create_private_dir(dir: &Path, recursive: bool) -> io::Result<()> {
    match recursive {
        true => fs::create_dir_all(dir)?,
        false => fs::create_dir(dir)?,
    }
    make_private(dir)
}

/// Creates (or truncates) a file; it inherits the private ACL of its directory.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

/// NTFS journals the rename itself, and a directory cannot be opened as a `File` here.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// An existing `--storage.path` is given the private ACL: there are no modes to check, and a
/// directory that inherits `%ProgramData%`'s ACL would be readable by every local user.
pub fn adopt_state_dir(path: &Path, _meta: &fs::Metadata) -> Result<(), String> {
    make_private(path).map_err(|e| format!("cannot restrict access to state directory {}: {e}", path.display()))
}

/// Subdirectories get the private ACL again, whatever happened to them.
pub fn adopt_subdir(path: &Path, _meta: &fs::Metadata) -> Result<(), String> {
    make_private(path).map_err(|e| format!("cannot restrict access to {}: {e}", path.display()))
}

/// With `--windows-service`: `%ProgramData%\veeam-restore-exporter` holds the configuration and
/// usually the password file, and inherits `%ProgramData%`'s ACL (every local user may read).
/// So at each start the service gives it the private ACL, propagated to the files in it. Only
/// this directory of our own, never `--storage.path`, whose existing children are left alone.
pub fn secure_defaults(flags: &crate::app::Flags) -> Result<(), String> {
    let dir = program_data();
    if !flags.windows_service || !dir.is_dir() {
        return Ok(());
    }
    let path = wide(&dir);
    let info = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION;
    with_private_descriptor(|descriptor| {
        let (mut present, mut defaulted, mut dacl) = (0, 0, std::ptr::null_mut::<ACL>());
        // SAFETY: the descriptor is valid for the closure; the DACL points into it; the path is
        // NUL-terminated. SetNamedSecurityInfoW propagates the inheritable entries to children.
        let rc = unsafe {
            if GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted) == 0 {
                return Err(io::Error::last_os_error());
            }
            let none = std::ptr::null_mut();
            SetNamedSecurityInfoW(path.as_ptr(), SE_FILE_OBJECT, info, none, none, dacl, std::ptr::null())
        };
        match rc {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code as i32)),
        }
    })
    .map_err(|e| format!("cannot restrict access to {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "restricted to SYSTEM, Administrators and the service account");
    Ok(())
}

/// Replaces the directory's ACL with a protected one (nothing inherited from above): full
/// control for SYSTEM, Administrators and the account the exporter runs as; inherited by the
/// files and subdirectories created in it. Children that exist already keep their ACL
/// (`SetFileSecurityW` does not propagate), which for the ledger means its own earlier files.
pub fn make_private(dir: &Path) -> io::Result<()> {
    let path = wide(dir);
    with_private_descriptor(|descriptor| {
        let info = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION;
        // SAFETY: the path is NUL-terminated and the descriptor valid for the closure.
        match unsafe { SetFileSecurityW(path.as_ptr(), info, descriptor) } {
            0 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        }
    })
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain([0]).collect()
}

/// Calls `f` with the security descriptor of [`private_sddl`], freed afterwards.
fn with_private_descriptor<T>(f: impl FnOnce(PSECURITY_DESCRIPTOR) -> io::Result<T>) -> io::Result<T> {
    let sddl: Vec<u16> = private_sddl()?.encode_utf16().chain([0]).collect();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the string is NUL-terminated; the descriptor is freed with LocalFree as documented.
    unsafe {
        let none = std::ptr::null_mut();
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.as_ptr(), SDDL_REVISION_1, &mut descriptor, none)
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        let result = f(descriptor);
        LocalFree(descriptor);
        result
    }
}

/// `D:P` (protected), then full access (`FA`), inherited by files and folders (`OICI`), for
/// SYSTEM, Administrators and this process's account.
fn private_sddl() -> io::Result<String> {
    static SDDL: OnceLock<String> = OnceLock::new();
    if let Some(s) = SDDL.get() {
        return Ok(s.clone());
    }
    let sid = current_user_sid()?;
    Ok(SDDL.get_or_init(|| format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{sid})")).clone())
}

/// The SID of the account the process runs as, e.g. `S-1-5-18` for LocalSystem.
fn current_user_sid() -> io::Result<String> {
    // SAFETY: the token handle is closed before returning; the buffer is large and aligned enough
    // for a TOKEN_USER (its SID points into the same buffer); the SID string is freed with LocalFree.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = [0u64; 128];
        let mut needed = 0u32;
        let size = std::mem::size_of_val(&buffer) as u32;
        let ok = GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), size, &mut needed);
        let err = io::Error::last_os_error();
        CloseHandle(token);
        if ok == 0 {
            return Err(err);
        }
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        let mut text: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut text) == 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        Ok(sid)
    }
}

/// What Windows reports cheaply about this process, with the names Prometheus' Go client uses
/// on Windows (`process_open_fds` counts handles). Thread counts and a handle limit have no
/// cheap, honest source and are left out.
pub fn process_metrics() -> Option<String> {
    let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    let mut memory: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    memory.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    let mut handles = 0u32;
    // SAFETY: each call writes only into the structures passed; the pseudo-handle needs no closing.
    let ok = unsafe {
        let me = GetCurrentProcess();
        GetProcessTimes(me, &mut created, &mut exited, &mut kernel, &mut user) != 0
            && K32GetProcessMemoryInfo(me, &mut memory, memory.cb) != 0
            && GetProcessHandleCount(me, &mut handles) != 0
    };
    if !ok {
        return None;
    }
    // FILETIMEs count 100 ns; `created` since 1601-01-01, 11,644,473,600 s before the Unix epoch.
    let ticks = |t: FILETIME| ((u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)) as f64 / 1e7;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let cpu = ticks(kernel) + ticks(user);
    metric("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
    metric("process_open_fds", "gauge", "Number of open handles.", f64::from(handles));
    let resident = memory.WorkingSetSize as f64;
    metric("process_resident_memory_bytes", "gauge", "Resident memory size (working set) in bytes.", resident);
    let start = ticks(created) - 11_644_473_600.0;
    metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start);
    let virtual_bytes = memory.PagefileUsage as f64;
    metric("process_virtual_memory_bytes", "gauge", "Committed private memory in bytes.", virtual_bytes);
    Some(out)
}

//! Who may use the web page: the admin password (argon2id), sessions, CSRF tokens and login
//! rate limiting. Pure bookkeeping over in-memory maps; the password hash lives in the store.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest admin password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Sessions kept at once; the oldest is dropped beyond this (a limit like every other).
const MAX_SESSIONS: usize = 64;
/// Addresses remembered by the login limiter.
const MAX_TRACKED_ADDRS: usize = 4096;

/// 32 random bytes as hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The PHC string of an argon2id hash with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| format!("the OS random source (getrandom, /dev/urandom): {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a new password is refused, or `None`.
pub fn weak_password(password: &str, confirm: &str) -> Option<String> {
    if password != confirm {
        Some("the two passwords differ".into())
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        Some(format!(
            "use at least {MIN_PASSWORD_CHARS} characters (a few words are easy to remember)"
        ))
    } else {
        None
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    pub ip: IpAddr,
    expires: Instant,
}

/// Live sessions and failed logins.
pub struct Auth {
    lifetime: Duration,
    attempts: u32,
    window: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// A login refused before the password is even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

impl Auth {
    pub fn new(lifetime: Duration, attempts: u32, window: Duration) -> Auth {
        Auth {
            lifetime,
            attempts,
            window,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Start a session; returns its id (the cookie value).
    pub fn create(&self, ip: IpAddr, now: Instant) -> String {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        let id = random_token();
        s.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                ip,
                expires: now + self.lifetime,
            },
        );
        id
    }

    /// The live session for a cookie value; using it extends its life.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = s.get_mut(id)?;
        if session.expires <= now {
            s.remove(id);
            return None;
        }
        session.expires = now + self.lifetime;
        Some(session.clone())
    }

    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Every session ends (after a password change).
    pub fn end_all(&self) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether `ip` must wait before trying again.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Locked> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let &(first, n) = f.get(&ip)?;
        let until = first + self.window;
        (n >= self.attempts && until > now).then(|| Locked {
            retry_after: until - now,
        })
    }

    /// Count a wrong password from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_TRACKED_ADDRS {
            let window = self.window;
            f.retain(|_, (first, _)| *first + window > now);
        }
        let entry = f.entry(ip).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
    }

    #[test]
    fn lockout_after_n_failures_then_window_passes() {
        let a = Auth::new(Duration::from_secs(60), 3, Duration::from_secs(100));
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            a.failed(ip, t0);
        }
        assert_eq!(a.locked(ip, t0), None);
        a.failed(ip, t0);
        assert!(a.locked(ip, t0 + Duration::from_secs(1)).is_some());
        assert!(a.locked("10.0.0.3".parse().unwrap(), t0).is_none());
        assert_eq!(a.locked(ip, t0 + Duration::from_secs(101)), None);
    }

    #[test]
    fn sessions_expire_and_slide() {
        let a = Auth::new(Duration::from_secs(60), 3, Duration::from_secs(100));
        let t0 = Instant::now();
        let id = a.create("127.0.0.1".parse().unwrap(), t0);
        assert!(a.get(&id, t0 + Duration::from_secs(50)).is_some());
        assert!(a.get(&id, t0 + Duration::from_secs(100)).is_some());
        assert!(a.get(&id, t0 + Duration::from_secs(200)).is_none());
        assert!(same_token("abc", "abc") && !same_token("abc", "abd"));
    }
}

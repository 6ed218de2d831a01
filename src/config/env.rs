//! Reading environment variables, shared by the configuration and each adapter's settings:
//! a missing or invalid variable is one [`ConfigError`] naming it.

use std::time::Duration;

/// What is wrong with a variable; with its name, one line of start-up output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is required")]
    Missing,
    /// A value that does not parse (a number, an address).
    #[error("{0:?} is not valid")]
    Invalid(String),
    #[error("must be at least 1")]
    Zero,
    #[error("must be a positive number of seconds")]
    NotPositiveSeconds,
    /// `allowed` lists the values, e.g. `text or json`.
    #[error("must be {allowed}, not {value:?}")]
    NotOneOf { allowed: &'static str, value: String },
    #[error("is required to read the environments' Airflow settings (or set CONNECT_TO_AIRFLOW=false)")]
    FernetKeyForAirflow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: Problem,
}

impl ConfigError {
    pub fn new(variable: &str, problem: Problem) -> Self {
        ConfigError { variable: variable.to_owned(), problem }
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// The variables, through a lookup; empty values count as unset.
pub struct Env(Lookup);

impl Env {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Env(Box::new(move |name| lookup(name).filter(|v| !v.trim().is_empty())))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    pub fn get_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::new(name, Problem::Missing))
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError::new(name, Problem::Invalid(value))),
        }
    }

    /// A count that must be at least 1 (a pool size, a bound).
    pub fn count(&self, name: &str, default: usize) -> Result<usize, ConfigError> {
        match self.parse(name, default)? {
            0 => Err(ConfigError::new(name, Problem::Zero)),
            count => Ok(count),
        }
    }

    /// A timeout in milliseconds; 0 would turn the bound off, so it is refused.
    pub fn millis(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        match self.parse(name, default)? {
            0 => Err(ConfigError::new(name, Problem::Zero)),
            millis => Ok(Duration::from_millis(millis)),
        }
    }

    /// A timeout in seconds (fractions allowed, e.g. `0.5`); 0 is refused.
    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        match self.parse(name, default as f64)? {
            seconds if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(Duration::from_secs_f64(seconds)),
            _ => Err(ConfigError::new(name, Problem::NotPositiveSeconds)),
        }
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => {
                Err(ConfigError::new(name, Problem::NotOneOf { allowed: "true or false", value: other.into() }))
            }
        }
    }

    /// One of `choices` (the first is the default), as the value it maps to.
    pub fn choice<T: Clone>(&self, name: &str, allowed: &'static str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let value = self.get_or(name, choices[0].0);
        match choices.iter().find(|(choice, _)| *choice == value) {
            Some((_, chosen)) => Ok(chosen.clone()),
            None => Err(ConfigError::new(name, Problem::NotOneOf { allowed, value })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&'static str, &'static str)]) -> Env {
        let vars = vars.to_vec();
        Env::new(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn each_problem_prints_as_before() {
        let line = |error: ConfigError| error.to_string();
        let env = env(&[("N", "ten"), ("Z", "0"), ("S", "-1"), ("F", "maybe"), ("C", "xml"), ("BLANK", "  ")]);
        assert_eq!(line(env.required("MISSING").unwrap_err()), "MISSING: is required");
        assert_eq!(line(env.parse::<u16>("N", 1).unwrap_err()), "N: \"ten\" is not valid");
        assert_eq!(line(env.count("Z", 1).unwrap_err()), "Z: must be at least 1");
        assert_eq!(line(env.millis("Z", 1).unwrap_err()), "Z: must be at least 1");
        assert_eq!(line(env.seconds("S", 1).unwrap_err()), "S: must be a positive number of seconds");
        assert_eq!(line(env.flag("F", true).unwrap_err()), "F: must be true or false, not \"maybe\"");
        assert_eq!(
            line(env.choice("C", "text or json", &[("text", 0), ("json", 1)]).unwrap_err()),
            "C: must be text or json, not \"xml\""
        );
        // Blank counts as unset: the default.
        assert_eq!(env.choice("BLANK", "text or json", &[("text", 0), ("json", 1)]).unwrap(), 0);
        assert_eq!(env.seconds("UNSET", 2).unwrap(), Duration::from_secs(2));
    }
}

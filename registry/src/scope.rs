//! What a request needs access to, as token realms grant it: a repository, pull or push, and
//! for a cross-repository mount the repository the blob comes from.

/// What a request needs access to: a repository, pull or push, and for cross-repository
/// mounts a second repository to pull from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The repository path.
    pub repository: String,
    /// Whether the request writes.
    pub push: bool,
    /// A repository to read from as well (mount source).
    pub also_pull: Option<String>,
}

impl Scope {
    /// Read access to `repository`.
    pub fn pull(repository: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: false,
            also_pull: None,
        }
    }

    /// Read and write access to `repository`.
    pub fn push(repository: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: true,
            also_pull: None,
        }
    }

    /// Write access to `repository` and read access to `from`, for a mount.
    pub fn mount(repository: &str, from: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: true,
            also_pull: Some(from.to_owned()),
        }
    }

    /// The `scope` query values.
    pub(crate) fn values(&self) -> Vec<String> {
        let actions = if self.push { "pull,push" } else { "pull" };
        let mut v = vec![format!("repository:{}:{actions}", self.repository)];
        if let Some(from) = &self.also_pull {
            v.push(format!("repository:{from}:pull"));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_values() {
        assert_eq!(Scope::pull("a/b").values(), ["repository:a/b:pull"]);
        assert_eq!(
            Scope::mount("a/b", "c/d").values(),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }
}

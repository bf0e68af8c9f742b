//! `helmCharts` of a `helm-latest` rule in config.json: each chart of the repository, rendered
//! once per `chartConfig` environment with that environment's `--set` values (once with the
//! chart's defaults when it has none).
//!
//! ```json
//! "helmCharts": {"cilium": {"chartConfig": {"aws": {"values": ["eni.enabled=true"]}}}}
//! ```

use serde_json::{Map, Value};

/// One chart and the ways it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmChart {
    /// The chart's name in the repository.
    pub name: String,
    /// One rendering per environment, in file order; one of the defaults when empty.
    pub environments: Vec<HelmEnvironment>,
}

/// One `chartConfig` environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmEnvironment {
    /// Its name (`aws`).
    pub name: String,
    /// `--set` values (`eni.enabled=true`).
    pub values: Vec<String>,
}

/// The charts of a `helmCharts` object; problems as `(key path, message)` under `prefix`
/// (`cilium.helmCharts`).
pub fn parse_helm_charts(
    map: &Map<String, Value>,
    prefix: &str,
) -> Result<Vec<HelmChart>, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut charts = Vec::new();
    for (name, body) in map {
        let at = format!("{prefix}.{name}");
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
            problems.push((at.clone(), format!("{name:?} is not a chart name")));
        }
        let Some(body) = body.as_object() else {
            problems.push((at, "expected an object".into()));
            continue;
        };
        if let Some(extra) = body.keys().find(|k| *k != "chartConfig") {
            problems.push((
                at.clone(),
                format!("unknown key {extra:?} (expected chartConfig)"),
            ));
        }
        let environments = match body.get("chartConfig") {
            None => Vec::new(),
            Some(Value::Object(envs)) => {
                environments(envs, &format!("{at}.chartConfig"), &mut problems)
            }
            Some(_) => {
                problems.push((format!("{at}.chartConfig"), "expected an object".into()));
                Vec::new()
            }
        };
        charts.push(HelmChart {
            name: name.clone(),
            environments,
        });
    }
    if problems.is_empty() {
        Ok(charts)
    } else {
        Err(problems)
    }
}

fn environments(
    envs: &Map<String, Value>,
    at: &str,
    problems: &mut Vec<(String, String)>,
) -> Vec<HelmEnvironment> {
    let mut out = Vec::new();
    for (name, env) in envs {
        let here = format!("{at}.{name}");
        let values = env.get("values").and_then(Value::as_array);
        let extra = env
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "values"));
        if let Some(extra) = extra {
            problems.push((
                here.clone(),
                format!("unknown key {extra:?} (expected values)"),
            ));
        }
        let Some(values) = values else {
            problems.push((
                format!("{here}.values"),
                "expected a list of KEY=VALUE strings".into(),
            ));
            continue;
        };
        let mut set = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v.as_str() {
                Some(s) if s.contains('=') && !s.starts_with('=') => set.push(s.to_owned()),
                _ => problems.push((
                    format!("{here}.values[{i}]"),
                    format!("expected KEY=VALUE, found {v}"),
                )),
            }
        }
        out.push(HelmEnvironment {
            name: name.clone(),
            values: set,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<HelmChart>, Vec<(String, String)>> {
        let v: Value = serde_json::from_str(text).unwrap();
        parse_helm_charts(v.as_object().unwrap(), "k.helmCharts")
    }

    #[test]
    fn charts_with_and_without_environments() {
        let charts = parse(
            r#"{"tigera-operator": {}, "cilium": {"chartConfig": {"aws": {"values": ["eni.enabled=true"]}, "generic": {"values": ["a=1", "b.c=x"]}}}}"#,
        )
        .unwrap();
        assert_eq!(charts[0].name, "tigera-operator");
        assert!(charts[0].environments.is_empty());
        assert_eq!(charts[1].environments[0].name, "aws");
        assert_eq!(charts[1].environments[1].values, ["a=1", "b.c=x"]);
    }

    #[test]
    fn problems_name_their_key() {
        let problems = parse(
            r#"{"c": {"chartConfig": {"aws": {"values": ["no-equals", 3]}}, "extra": 1}, "d": []}"#,
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"k.helmCharts.c"), "{problems:?}");
        assert!(keys.contains(&"k.helmCharts.c.chartConfig.aws.values[0]"));
        assert!(keys.contains(&"k.helmCharts.c.chartConfig.aws.values[1]"));
        assert!(keys.contains(&"k.helmCharts.d"));
    }
}

"""``chart.*``: lint, render and test the Helm chart with an environment's layered values."""

from __future__ import annotations

from invoke import Collection

from ._boundary import lazy, mtask, project, reporter

helm = lazy("moorage.helm")
config = lazy("moorage.core.config")


@mtask(help={"env": "lint with this environment's values only (default: every environment)"})
def lint(ctx, env=None):
    """Run `helm lint --strict` on the chart with each environment's layered values."""
    proj = project(ctx)
    out = reporter()
    envs = [proj.env(env)] if env else [proj.environments[name] for name in sorted(proj.environments)]
    for environment in envs:
        config.load_values(environment)  # malformed YAML: one line naming file and line
        with helm.layered_values(environment, *helm.placeholder_layers(proj, environment)) as files:
            helm.call(helm.lint_command(proj.chart, files), timeout=120, what=f"helm lint ({environment.name})",
                      values_files=environment.values_files)
        shown = ", ".join(str(f.relative_to(proj.root)) if f.is_relative_to(proj.root) else str(f)
                          for f in environment.values_files)
        out.ok(f"chart lints cleanly with {shown}")


@mtask(help={
    "env": "environment whose values to render with (default: MOORAGE_ENV, then dev)",
    "output": "write the manifests to this file instead of stdout",
})
def template(ctx, env=None, output=None):
    """Render the chart as `dev.deploy` would apply it (secrets shown as placeholders)."""
    proj = project(ctx)
    environment = proj.env(env)
    config.load_values(environment)
    with helm.layered_values(environment, *helm.placeholder_layers(proj, environment)) as files:
        result = helm.call(helm.template_command(proj.release, proj.chart, environment.namespace, files),
                           timeout=120, what=f"helm template ({environment.name})",
                           values_files=environment.values_files)
    if output:
        with open(output, "w") as handle:
            handle.write(result.stdout)
        reporter().ok(f"wrote {output}")
    else:
        print(result.stdout, end="")


@mtask(help={"env": "environment whose release to test (default: MOORAGE_ENV, then dev)"})
def test(ctx, env=None):
    """Run the chart's in-cluster tests (`helm test`) against the deployed release."""
    from ..core import proc

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    args = helm.test_command(proj.release, environment.namespace, environment.context, environment.timeout)
    result = proc.run(args, timeout=environment.timeout + 30, what="helm test",
                      hint=f"inspect with: inv dev.logs --env {environment.name}")
    out.line(result.stdout.rstrip())
    out.ok(f"helm tests passed for release {proj.release} in {environment.namespace}")


ns = Collection("chart", lint, template, test)

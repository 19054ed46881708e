"""Configuration loading and every validation error: one line naming the file/key, exit code 2."""

from pathlib import Path

import pytest

from moorage.core.config import expand, load_project, load_secrets, load_values
from moorage.core.errors import EXIT_BAD_INPUT, ConfigError


def make_root(tmp_path: Path, envs=("dev", "prod")) -> Path:
    (tmp_path / "environments").mkdir()
    for name in envs:
        (tmp_path / "environments" / f"{name}.yaml").write_text("backend:\n  replicaCount: 1\n")
    return tmp_path


def base_config(**overrides):
    raw = {
        "release": "shop",
        "images": [{"name": "api", "dockerfile": "Dockerfile.api"}],
        "secrets": {"DB_PASSWORD": "postgresql.auth.password"},
        "environments": {
            "dev": {"required_secrets": ["DB_PASSWORD"]},
            "prod": {"production": True, "context": "prod-ctx", "cluster": "remote", "registry": "reg.io/shop/"},
        },
    }
    raw.update(overrides)
    return raw


def test_environments_are_discovered_from_the_values_folder(tmp_path):
    project = load_project(base_config(environments={}), make_root(tmp_path, ("dev", "qa", "prod")))
    assert sorted(project.environments) == ["dev", "prod", "qa"]
    assert project.env("qa").namespace == "shop-qa"


def test_environment_section_settings_are_applied(tmp_path):
    project = load_project(base_config(), make_root(tmp_path))
    prod = project.env("prod")
    assert prod.production and prod.context == "prod-ctx" and prod.cluster == "remote"
    assert prod.registry == "reg.io/shop"
    assert project.production_contexts() == {"prod-ctx": "prod"}


def test_unknown_environment_lists_the_known_ones(tmp_path):
    project = load_project(base_config(), make_root(tmp_path))
    with pytest.raises(ConfigError) as err:
        project.env("qa")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "unknown environment 'qa' (known: dev, prod)" in err.value.line()
    assert "environments/qa.yaml" in err.value.line()


def test_default_environment_comes_from_moorage_env(tmp_path, monkeypatch):
    project = load_project(base_config(), make_root(tmp_path))
    monkeypatch.setenv("MOORAGE_ENV", "prod")
    assert project.env().name == "prod"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"release": 5}, "moorage.release in invoke.yaml must be a non-empty string, got 5"),
        ({"release": "Bad_Name"}, "moorage.release in invoke.yaml must be a DNS label"),
        ({"images": {"name": "x"}}, "moorage.images in invoke.yaml must be a list"),
        ({"images": [{"name": "Bad Image!"}]}, "bad image name 'Bad Image!' at moorage.images[0].name"),
        ({"images": [{"name": "a"}, {"name": "a"}]}, "image name 'a' appears twice"),
        ({"images": [{"name": "a", "build_args": {"X": ["list"]}}]}, "moorage.images[0].build_args.X"),
        ({"colour": "blue"}, "unknown key moorage.colour in invoke.yaml"),
        ({"environments": {"dev": {"timeout": "soon"}}}, "moorage.environments.dev.timeout in invoke.yaml must be an integer"),
        ({"environments": {"dev": {"production": "yes"}}}, "moorage.environments.dev.production in invoke.yaml must be true or false"),
        ({"environments": {"dev": {"cluster": "mesos"}}}, "moorage.environments.dev.cluster in invoke.yaml must be one of"),
        ({"environments": {"qa": {}}}, "moorage.environments.qa in invoke.yaml has no values file environments/qa.yaml"),
        ({"environments": {"dev": {"smoke": [{"name": "s", "service": "api"}]}}}, "moorage.environments.dev.smoke[0].port is missing"),
        ({"environments": {"dev": {"smoke": [{"name": "s", "service": "api", "port": 80, "path": "x"}]}}},
         "moorage.environments.dev.smoke[0].path in invoke.yaml must be a path starting with '/'"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_project(base_config(**overrides), make_root(tmp_path))
    assert expected in err.value.line()
    assert "\n" not in err.value.line()
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_malformed_values_yaml_names_file_and_line(tmp_path):
    root = make_root(tmp_path)
    (root / "environments" / "dev.yaml").write_text("backend:\n  replicaCount: 1\n  bad: [unclosed\n")
    project = load_project(base_config(), root)
    with pytest.raises(ConfigError) as err:
        load_values(project.env("dev"))
    assert f"malformed YAML in {root / 'environments' / 'dev.yaml'}:" in err.value.line()
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_values_file_must_be_a_mapping(tmp_path):
    root = make_root(tmp_path)
    (root / "environments" / "dev.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_values(load_project(base_config(), root).env("dev"))


def test_secrets_are_layered_and_the_environment_wins(tmp_path):
    root = make_root(tmp_path)
    (root / ".env").write_text("DB_PASSWORD=from-dotenv\nOTHER=ignored\n")
    (root / ".env.dev").write_text("DB_PASSWORD=from-dev\n")
    project = load_project(base_config(), root)
    assert load_secrets(project, project.env("dev"), environ={}) == {"DB_PASSWORD": "from-dev"}
    assert load_secrets(project, project.env("dev"), environ={"DB_PASSWORD": "real"}) == {"DB_PASSWORD": "real"}


@pytest.mark.parametrize("content", ["", "DB_PASSWORD=\n", "DB_PASSWORD=   \n"])
def test_missing_or_empty_required_secret_names_key_and_file(tmp_path, content):
    root = make_root(tmp_path)
    (root / ".env.dev").write_text(content)
    project = load_project(base_config(), root)
    with pytest.raises(ConfigError) as err:
        load_secrets(project, project.env("dev"), environ={})
    assert "required secret DB_PASSWORD for environment 'dev' is missing or empty" in err.value.line()
    assert ".env.dev" in err.value.line()
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_build_args_expand_environment_variables():
    assert expand("${BASE:-python:3.12}", "w", "f", {}) == "python:3.12"
    assert expand("${BASE:-python:3.12}", "w", "f", {"BASE": "local/py"}) == "local/py"
    with pytest.raises(ConfigError, match=r"uses \$\{NOPE\}, which is not set"):
        expand("${NOPE}", "moorage.images[0].build_args.X", "invoke.yaml", {})


def test_the_shipped_config_is_valid():
    import yaml

    root = Path(__file__).resolve().parents[2]
    raw = yaml.safe_load((root / "invoke.yaml").read_text())["moorage"]
    project = load_project(raw, root)
    assert {"dev", "staging", "prod"} <= set(project.environments)
    assert [i.name for i in project.images] == ["backend", "worker", "frontend"]
    assert project.env("prod").production


def test_an_environment_can_list_its_own_values_files_anywhere(tmp_path):
    root = make_root(tmp_path, ("dev",))
    (root / "charts" / "app").mkdir(parents=True)
    (root / "charts" / "app" / "values-local.yaml").write_text("a: {b: 1, c: 1}\nl: [1]\n")
    (root / "overrides.yaml").write_text("a: {c: 2}\nl: [2]\n")
    project = load_project(base_config(environments={
        "local": {"values": ["charts/app/values-local.yaml", "overrides.yaml"]}}), root)
    local = project.env("local")
    assert local.values_files == (root / "charts/app/values-local.yaml", root / "overrides.yaml")
    assert load_values(local) == {"a": {"b": 1, "c": 2}, "l": [2]}
    assert project.env("dev").values_files == (root / "environments" / "dev.yaml",)


def test_a_missing_listed_values_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"moorage\.environments\.local\.values\[0\] .*nope\.yaml does not exist"):
        load_project(base_config(environments={"local": {"values": ["nope.yaml"]}}), make_root(tmp_path))


@pytest.mark.parametrize("image, message", [
    ({"name": "api", "values_style": "json"}, r"values_style .* must be one of split, string"),
    ({"name": "api", "pull_policy": "Sometimes"}, r"pull_policy .* must be one of Always, IfNotPresent, Never"),
    ({"name": "api", "values_key": "workers[x].image"}, r"values_key .* must be a dotted values path"),
])
def test_bad_image_value_settings_are_one_line(tmp_path, image, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_project(base_config(images=[image]), make_root(tmp_path))
    assert err.value.exit_code == EXIT_BAD_INPUT and "\n" not in err.value.line()


def test_service_names_follow_the_configured_template(tmp_path):
    root = make_root(tmp_path)
    assert load_project(base_config(), root).service_name("backend") == "shop-backend"
    assert load_project(base_config(service_name="{name}"), root).service_name("backend") == "backend"
    with pytest.raises(ConfigError, match=r"service_name .* must be a template with \{name\}"):
        load_project(base_config(service_name="{release}-{component}"), root)

import pytest

from sam_server.config import DEFAULT_CACHE_MIB, ConfigError, read_config

ENV = {"LABEL_STUDIO_URL": "http://label-studio", "LABEL_STUDIO_API_KEY": "token"}


def test_the_defaults_and_the_deployments_variables():
    config = read_config({**ENV, "SAM_MODEL": "sam2.1-small", "SAM_CHECKPOINT_DIR": "/ckpt", "SAM_DEVICE": "cpu"})
    assert str(config.checkpoint) == "/ckpt/sam2.1_hiera_small.pt"
    assert config.model_config == "configs/sam2.1/sam2.1_hiera_s.yaml"
    assert config.cache_bytes("cpu") == DEFAULT_CACHE_MIB["cpu"] * 2**20
    assert config.label_studio_token == "token" and config.peers == ()


def test_the_older_spellings_of_label_studios_address_and_token():
    config = read_config({"LABEL_STUDIO_HOST": "http://ls", "LABEL_STUDIO_ACCESS_TOKEN": "t"})
    assert (config.label_studio_url, config.label_studio_token) == ("http://ls", "t")


@pytest.mark.parametrize(("variables", "words"), [
    ({"SAM_MODEL": "sam2-huge"}, "SAM_MODEL='sam2-huge' is not a SAM 2.1 model; expected one of sam2.1-tiny"),
    ({"SAM_DEVICE": "gpu"}, "SAM_DEVICE='gpu' is not a device; expected one of auto, cpu, cuda"),
    ({"SAM_EMBEDDING_CACHE_MIB": "1GiB"}, "SAM_EMBEDDING_CACHE_MIB='1GiB' is not a whole number"),
    ({"SAM_PORT": "70000"}, "SAM_PORT='70000' is out of range; expected 1..65535"),
    ({"SAM_PEERS": "sam-peers:9090"}, "SAM_PEERS='sam-peers:9090' is set without SAM_SELF_ADDRESS"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variables, words):
    with pytest.raises(ConfigError) as failed:
        read_config({**ENV, **variables})
    assert words in str(failed.value) and "\n" not in str(failed.value)

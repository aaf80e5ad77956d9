"""What every part of the robustness report shares: the repository, the test fixtures, the demo model."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "infinity_tiny"
TRANSFORMER_FIXTURE = FIXTURES / "infinity_tiny.safetensors"
VAE_FIXTURE = FIXTURES / "vae_tiny.safetensors"
T5_FIXTURE = FIXTURES / "t5_tiny.safetensors"

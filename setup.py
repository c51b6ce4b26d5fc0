"""fesa_fairseq: Frame-level Emotional State Alignment (Li et al., ICASSP 2024) as a fairseq user dir."""

from setuptools import find_packages, setup

# Official fairseq 0.12.2 does not import on Python >= 3.11 (a mutable dataclass default in its
# configs); fairseq-fixed is a maintained snapshot of fairseq that does and builds from source.
# Both provide the import name `fairseq`; the plugin only uses APIs that 0.12.2 already had.
FAIRSEQ = [
    "fairseq==0.12.2; python_version < '3.11'",
    "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
]

setup(
    name="fesa_fairseq",
    version="0.1.0",
    description="Frame-level emotional state alignment for speech emotion recognition, on fairseq HuBERT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # fesa_fairseq: what fairseq loads (importing it registers with fairseq); fesa: the application on top of it,
    # the command line included (docs/design.md, Layout).
    packages=find_packages(include=["fesa_fairseq", "fesa_fairseq.*", "fesa", "fesa.*"]),
    package_data={"fesa_fairseq": ["config/*/*.yaml"]},
    include_package_data=True,
    install_requires=FAIRSEQ
    + [
        # >= 2.6: torch.load reads with weights_only=True by default, which fairseq's own loader relies on to
        # refuse a crafted checkpoint (a pickle could otherwise run code).
        "torch>=2.6",
        "numpy",
        "scipy",
        "soundfile",
        "scikit-learn",
        "npy-append-array",
        "tensorboardX",
        "tqdm",
        "matplotlib",
        "kaldi-native-fbank",
        "faiss-cpu",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "pytest-random-order", "ruff"],
        "slurm": ["hydra-submitit-launcher"],
        "export": ["onnx", "onnxruntime", "onnxscript"],  # fesa export --onnx (torch.onnx's dynamo exporter needs onnxscript)
        "hf": ["transformers>=4.40", "safetensors"],  # fesa import-hf and fesa export --hf (tested with transformers 5.24)
    },
    entry_points={"console_scripts": ["fesa = fesa.cli:main"]},
)

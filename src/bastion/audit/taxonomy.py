"""The security frameworks findings are filed under: MITRE ATLAS techniques and the OWASP Machine Learning
Security Top 10 (2023). Which codes map to which IDs lives on the catalogue (:mod:`bastion.audit.findings`);
this module only names the IDs, for docs/checks.md, the HTML report and SARIF's taxonomies.

Names and IDs as published in ATLAS data 5.6.0 (mitre-atlas/atlas-data, data/techniques.yaml, May 2026;
ATLAS renamed "ML" to "AI" in technique names, IDs are stable) and the OWASP Machine Learning Security
Top Ten 2023 (OWASP/www-project-machine-learning-security-top-10).
"""

from __future__ import annotations

__all__ = ["ATLAS", "ATLAS_VERSION", "OWASP_ML", "OWASP_ML_VERSION", "atlas_url", "owasp_url"]

ATLAS_VERSION = "5.6.0"
OWASP_ML_VERSION = "2023"

ATLAS: dict[str, str] = {
    "AML.T0010": "AI Supply Chain Compromise",
    "AML.T0010.002": "AI Supply Chain Compromise: Data",
    "AML.T0010.003": "AI Supply Chain Compromise: Model",
    "AML.T0015": "Evade AI Model",
    "AML.T0018": "Manipulate AI Model",
    "AML.T0018.000": "Manipulate AI Model: Poison AI Model",
    "AML.T0020": "Poison Training Data",
    "AML.T0024": "Exfiltration via AI Inference API",
    "AML.T0024.000": "Exfiltration via AI Inference API: Infer Training Data Membership",
    "AML.T0024.001": "Exfiltration via AI Inference API: Invert AI Model",
    "AML.T0024.002": "Exfiltration via AI Inference API: Extract AI Model",
    "AML.T0041": "Physical Environment Access",
    "AML.T0043": "Craft Adversarial Data",
    "AML.T0043.000": "Craft Adversarial Data: White-Box Optimization",
    "AML.T0043.001": "Craft Adversarial Data: Black-Box Optimization",
    "AML.T0043.002": "Craft Adversarial Data: Black-Box Transfer",
    "AML.T0043.004": "Craft Adversarial Data: Insert Backdoor Trigger",
    "AML.T0048": "External Harms",
    "AML.T0048.004": "External Harms: AI Intellectual Property Theft",
    "AML.T0059": "Erode Dataset Integrity",
}
"""The ATLAS techniques the catalogue uses (a sub-technique's name is prefixed with its parent's)."""

OWASP_ML: dict[str, str] = {
    "ML01": "Input Manipulation Attack",
    "ML02": "Data Poisoning Attack",
    "ML03": "Model Inversion Attack",
    "ML04": "Membership Inference Attack",
    "ML05": "Model Theft",
    "ML06": "AI Supply Chain Attacks",
    "ML07": "Transfer Learning Attack",
    "ML08": "Model Skewing",
    "ML09": "Output Integrity Attack",
    "ML10": "Model Poisoning",
}
"""The whole OWASP Machine Learning Security Top 10 (2023); IDs are written ``ML01`` (``ML01:2023``)."""


def atlas_url(technique: str) -> str:
    """The technique's page on atlas.mitre.org (a sub-technique's ID is its path: AML.T0043.000)."""
    return f"https://atlas.mitre.org/techniques/{technique}"


def owasp_url(item: str) -> str:
    """The item's page in the OWASP ML Security Top 10 (2023)."""
    return (
        f"https://owasp.org/www-project-machine-learning-security-top-10/docs/{item}_{OWASP_ML_VERSION}-"
        + (OWASP_ML[item].replace(" ", "_"))
    )

"""Campaigns: many plans, chips and conditions from one YAML file, resumable overnight.

See ``docs/campaigns.md`` for the file format, expansion, resume and failure policy.
"""

from labcim.campaign.runner import (
    CampaignResult,
    StepOutcome,
    campaign_runs,
    finished_steps,
    run_campaign,
)
from labcim.campaign.schema import Campaign, CampaignError, Step, load_campaign

__all__ = [
    "Campaign",
    "CampaignError",
    "CampaignResult",
    "Step",
    "StepOutcome",
    "campaign_runs",
    "finished_steps",
    "load_campaign",
    "run_campaign",
]

"""The Slack bot: `/brief` and `/ask` slash commands and @-mentions over the search index
(`app`), their replies (`answers`) and the search answers' Block Kit (`blocks`). Posting the
daily brief to a channel is delivery, beside the email: digest.slack and digest.slack_blocks.
Nothing here loads unless Slack is configured.
"""

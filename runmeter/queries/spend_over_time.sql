-- Spend per time bucket (second, 10 s, minute, hour, day or week) by a dimension, from the calls. Unpriced calls are counted, never summed as $0.
SELECT
    multiIf({bucket:String} = 'second', toStartOfSecond(Timestamp), {bucket:String} = '10s', toStartOfInterval(Timestamp, toIntervalSecond(10)),
            {bucket:String} = 'minute', toStartOfMinute(Timestamp), {bucket:String} = 'hour', toStartOfHour(Timestamp),
            {bucket:String} = 'week', toDateTime(toMonday(Timestamp)), toStartOfDay(Timestamp)) AS Bucket,
    multiIf({group:String} = 'owner', Owner, {group:String} = 'project', Project, {group:String} = 'provider', Provider,
            {group:String} = 'none', 'all', Model) AS Group,
    round(sumIf(CostUsd, Priced = 1 AND Estimated = 0), 6) AS PricedUsd,
    round(sumIf(CostUsd, Priced = 1 AND Estimated = 1), 6) AS EstimatedUsd,
    countIf(Priced = 0) AS UnpricedCalls,
    count() AS Calls
FROM runmeter_calls
WHERE {{include:_llm_calls_in_window}}
GROUP BY Bucket, Group
ORDER BY Bucket, Group
